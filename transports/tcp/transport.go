package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// Name and Version describe this transport (transport.Info).
const (
	Name    = "tcp"
	Version = "0.1.0"
)

// ErrLayoutMismatch is the error of a session refused because the source
// and destination guest RAM layouts differ.
var ErrLayoutMismatch = errors.New("guest RAM layouts of source and destination differ")

// Transport is the TCP transport. It serves one session at a time and
// may be opened again after Close.
type Transport struct {
	log      hclog.Logger
	slot     sessionbase.Slot[session] // the open session
	listened transport.Listened        // the addresses of receiving Opens
	stats    counters
	wrapRaw  func(int, net.Conn) net.Conn // tests only: see session.wrapRaw
}

var (
	_ transport.Transport      = (*Transport)(nil)
	_ transport.Pusher         = (*Transport)(nil)
	_ transport.ListenerHolder = (*Transport)(nil)
	_ transport.Validator      = (*Transport)(nil)
)

// New returns a Transport that logs to log (nil: nowhere).
func New(log hclog.Logger) *Transport {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Transport{log: log.Named(Name), slot: sessionbase.NewSlot[session](Name + " transport")}
}

// Info implements transport.Transport.
func (t *Transport) Info(context.Context) (transport.Info, error) {
	return transport.Info{Name: Name, Version: Version}, nil
}

// Schema implements transport.Transport.
func (t *Transport) Schema(context.Context) (schema.Schema, error) {
	return append(schema.Schema(nil), configSchema...), nil
}

// Validate implements transport.Validator: parseConfig, the checks Open
// runs first, with nothing opened. They are the same for both roles: a
// sending Open dials connect (or listen) and a receiving one listens on
// listen, and parseConfig checks both addresses whatever the role. What
// Open finds only later is not checked: the credentials, a listen
// address this host cannot bind, a destination the source cannot reach
// or a host name that does not resolve.
func (t *Transport) Validate(_ context.Context, c schema.Config) error {
	_, err := parseConfig(c)
	return err
}

// Open implements transport.Transport: RoleSend dials the destination's
// listen address, RoleReceive listens there until the source connected.
// Every stream is authenticated first (see tls.go).
func (t *Transport) Open(ctx context.Context, req transport.OpenRequest) error {
	if err := t.slot.CheckOpen(req.Role); err != nil {
		return err
	}
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("tcp transport: %w", err)
	}
	auth, err := req.Credentials.TLSConfig(req.Role)
	if err != nil {
		return fmt.Errorf("tcp transport: %w", err)
	}
	m, err := mapRAM(req, req.Role == transport.RoleReceive)
	if err != nil {
		return fmt.Errorf("tcp transport: %w", err)
	}
	t.stats.reset()
	s := newSession(req.Role, t.log.With("role", req.Role.String()), cfg, m, &t.stats)
	s.auth, s.plain, s.tag, s.ver = auth, req.Credentials.Plaintext, req.Tag, wire.Version
	s.wrapRaw = t.wrapRaw
	if req.Role == transport.RoleSend {
		err = openSend(ctx, s)
	} else {
		t.listened.Add(cfg.listen)
		err = openReceive(ctx, s)
	}
	if err != nil {
		m.Unmap()
		return fmt.Errorf("tcp transport: %w", err)
	}
	s.start()
	t.slot.Put(s, req.Role)
	return nil
}

// start runs the session's goroutines: on the source a writer and an ACK
// reader per bulk stream, on the destination a reader per bulk stream; on
// both a reader of the urgent stream.
func (s *session) start() {
	s.lanes = make([]transport.Lane, len(s.streams))
	if s.urgent != nil { // Open always has one; the fuzz test feeds a bulk stream alone
		s.wg.Go(func() { s.urgentLoop(s.urgent) })
	}
	for _, st := range s.streams {
		if s.Role == transport.RoleReceive {
			st.dec.AcceptStrided(batchPages, uint16(len(s.streams)))
			s.wg.Go(func() { s.readLoop(st) })
			continue
		}
		st.queue = make(chan batch, queueDepth)
		if s.cfg.compress {
			st.w.comp = &compressor{}
		}
		s.wg.Go(func() { s.writeLoop(st) })
		s.wg.Go(func() { s.ackLoop(st) })
	}
}

// SendPages implements transport.Transport.
func (t *Transport) SendPages(ctx context.Context, runs []transport.PageRun) error {
	s, err := t.slot.Sender("SendPages")
	if err != nil {
		return err
	}
	if err := s.Err(); err != nil {
		return err
	}
	return s.sendPages(ctx, runs)
}

// Flush implements transport.Transport.
func (t *Transport) Flush(ctx context.Context) error {
	s, err := t.slot.Sender("Flush")
	if err != nil {
		return err
	}
	return s.flush(ctx)
}

// SendMessage implements transport.Transport.
func (t *Transport) SendMessage(ctx context.Context, m transport.Message) error {
	s, err := t.slot.Get()
	if err != nil {
		return err
	}
	return s.sendMessage(ctx, m)
}

// RecvMessage implements transport.Transport.
func (t *Transport) RecvMessage(ctx context.Context) (transport.Message, error) {
	s, err := t.slot.Get()
	if err != nil {
		return transport.Message{}, err
	}
	return s.RecvMessage(ctx)
}

// Stats implements transport.Transport; after Close it reports the last session.
func (t *Transport) Stats(context.Context) (transport.Stats, error) {
	st := transport.Stats{BytesWire: t.stats.wire.Load(), PagesData: t.stats.data.Load(),
		PagesZero: t.stats.zero.Load(), Compressed: t.stats.compressed.Load()}
	if s, err := t.slot.Sender("Stats"); err == nil && len(s.streams) > 0 {
		st.RTT = smoothedRTT(s.streams[0].raw) // the first bulk stream's: the one that carries messages
	}
	return st, nil
}

// Close implements transport.Transport: it ends the session, joins its
// goroutines, unmaps guest RAM and lets the listening sockets of its
// receiving Opens go (transport.Listened). Closing a closed Transport is
// a no-op.
func (t *Transport) Close() error {
	err := t.CloseHoldingListeners()
	t.listened.Release()
	return err
}

// CloseHoldingListeners implements transport.ListenerHolder: Close, but
// the listening socket stays bound for the next receiving Open on the
// same address (post-copy's reconnect), until Close.
func (t *Transport) CloseHoldingListeners() error {
	s := t.slot.Take()
	if s == nil {
		return nil
	}
	return s.close()
}
