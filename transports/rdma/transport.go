package rdma

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// Name and Version describe this transport (transport.Info).
const (
	Name    = "rdma"
	Version = "0.1.0"
)

// Transport is the RDMA transport. It serves one session at a time and
// may be opened again after Close.
type Transport struct {
	log      hclog.Logger
	slot     sessionbase.Slot[session] // the open session
	listened transport.Listened        // the addresses of receiving Opens
	stats    counters

	commitEarly  bool                    // tests only: see sender.commitEarly
	ucommitEarly bool                    // tests only: see usender.commitEarly
	urgentTag    *transport.Tag          // tests only: the tag the urgent channel names instead of the session's
	registerHook func() error            // tests only: see receiver.hook, sender.hook
	answeredHook func()                  // tests only: see session.answeredHook
	wrapCtrl     func(net.Conn) net.Conn // tests only: stands between an open session and its control channel's writes
	wrapRaw      func(net.Conn) net.Conn // tests only: see session.wrapRaw
	pacePolls    func()                  // tests only: see queue.pace (a source's endpoints)
	markWait     func()                  // tests only: see sender.markWait
	postHook     func(mark bool)         // tests only: see sender.postHook
	claimWait    func(bool)              // tests only: see sender.claimWait
	commitPages  func(uint64) uint64     // tests only: see sender.commitPages
	driveWait    func()                  // tests only: see queue.driveWait (the bulk endpoint's)

	ucommitRuns func([]transport.PageRun) []transport.PageRun // tests only: see usender.commitRuns

	warm func(provider string) <-chan struct{} // tests only: stands for fabric.Warm (awaitLibfabric)
}

var (
	_ transport.Transport      = (*Transport)(nil)
	_ transport.Pusher         = (*Transport)(nil)
	_ transport.ListenerHolder = (*Transport)(nil)
	_ transport.Validator      = (*Transport)(nil)
)

// New returns a Transport that logs to log (nil: nowhere). It starts
// libfabric's one-time initialisation in the background
// (fabric.Warm("")), as a plugin process starts: the provider is not
// known before Open, which warms that provider and waits for it
// outside connect_timeout (awaitLibfabric).
func New(log hclog.Logger) *Transport {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fabric.Warm("")
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
// runs first, with nothing opened. They are the same for both roles:
// parseConfig checks listen and connect whatever the role. What Open
// finds only later is not checked: whether cleartext_pages is needed
// (that depends on the credentials), whether this build has libfabric
// and the provider works here, a listen address this host cannot bind,
// a destination the source cannot reach.
func (t *Transport) Validate(_ context.Context, c schema.Config) error {
	_, err := parseConfig(c)
	return err
}

// Open implements transport.Transport: RoleSend dials the destination's
// control address, authenticates, then connects the fabric endpoint the
// destination offered; RoleReceive listens until such a source came.
func (t *Transport) Open(ctx context.Context, req transport.OpenRequest) error {
	if err := t.slot.CheckOpen(req.Role); err != nil {
		return err
	}
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return fmt.Errorf("rdma transport: %w", err)
	}
	auth, err := req.Credentials.TLSConfig(req.Role)
	if err != nil {
		return fmt.Errorf("rdma transport: %w", err)
	}
	if !req.Credentials.Plaintext && !cfg.cleartextPages {
		return fmt.Errorf("rdma transport: %w", badConfig(transport.CleartextPages, "RDMA writes move page contents unencrypted; "+
			"set cleartext_pages = true in the transport block to accept that (messages, zero runs and keys stay inside TLS), or use the tcp transport"))
	}
	if !fabric.Supported {
		return fmt.Errorf("rdma transport: %w: %w", fabric.ErrNotSupported, transport.ErrNotSupported)
	}
	warm := fabric.Warm
	if t.warm != nil {
		warm = t.warm
	}
	warmed := warm(cfg.provider) // awaited before the setup's clock starts
	m, err := mapRAM(req, req.Role == transport.RoleReceive)
	if err != nil {
		return fmt.Errorf("rdma transport: %w", err)
	}
	t.stats.wire.Store(0)
	t.stats.data.Store(0)
	t.stats.zero.Store(0)
	t.stats.rtt.Store(0)
	s := newSession(req.Role, t.log.With("role", req.Role.String()), cfg, m, &t.stats)
	s.auth, s.plain, s.tag, s.warmed = auth, req.Credentials.Plaintext, req.Tag, warmed
	s.snd.commitEarly = t.commitEarly
	s.usnd.commitEarly = t.ucommitEarly
	s.usnd.commitRuns = t.ucommitRuns
	s.urgentTag = s.tag
	if t.urgentTag != nil {
		s.urgentTag = *t.urgentTag
	}
	s.rcv.hook, s.snd.hook = t.registerHook, t.registerHook
	s.answeredHook = t.answeredHook
	s.wrapRaw = t.wrapRaw
	if req.Role == transport.RoleSend {
		err = openSend(ctx, s)
	} else {
		t.listened.Add(cfg.listen)
		err = openReceive(ctx, s)
	}
	if err != nil {
		s.snd.release()
		s.rcv.release()
		s.usnd.release()
		s.urcv.release()
		m.Unmap()
		return fmt.Errorf("rdma transport: %w", err)
	}
	if t.wrapCtrl != nil {
		s.ctrl = t.wrapCtrl(s.ctrl)
	}
	if req.Role == transport.RoleSend {
		s.snd.pace, s.usnd.pace = t.pacePolls, t.pacePolls
		s.snd.markWait = t.markWait
		s.snd.postHook = t.postHook
		s.snd.claimWait = t.claimWait
		s.snd.commitPages = t.commitPages
		s.snd.driveWait = t.driveWait
		s.wg.Go(s.pollSend)
		if !s.snd.commitEarly {
			s.wg.Go(s.reportWritten)
		}
		s.wg.Go(func() { s.readCtrl(s.sendCtrl) })
		s.wg.Go(s.pollUrgentSend)
		s.wg.Go(func() { s.readFrames(s.udec, "urgent channel", &s.Umsgs, s.usendCtrl) })
		s.wg.Go(s.urgentLoop)
	} else {
		s.wg.Go(s.pollReceive)
		s.wg.Go(func() { s.readCtrl(s.receiveCtrl) })
		s.wg.Go(s.pollUrgentReceive)
		s.wg.Go(func() { s.readFrames(s.udec, "urgent channel", &s.Umsgs, s.ureceiveCtrl) })
		s.wg.Go(s.uackLoop)
	}
	t.slot.Put(s, req.Role)
	return nil
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
	s.snd.drive()
	defer s.snd.standBack()
	return s.sendPages(ctx, runs)
}

// Flush implements transport.Transport.
func (t *Transport) Flush(ctx context.Context) error {
	s, err := t.slot.Sender("Flush")
	if err != nil {
		return err
	}
	s.snd.drive()
	defer s.snd.standBack()
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

// Stats implements transport.Transport; after Close it reports the last
// session. RTT is the smallest COMMIT or MARK round trip of a sending
// session's last batch acknowledged (rtt.go), 0 before its first ACK and
// on a receiving session.
func (t *Transport) Stats(context.Context) (transport.Stats, error) {
	return transport.Stats{BytesWire: t.stats.wire.Load(), PagesData: t.stats.data.Load(), PagesZero: t.stats.zero.Load(),
		RTT: time.Duration(t.stats.rtt.Load())}, nil
}

// Close implements transport.Transport.
func (t *Transport) Close() error {
	err := t.CloseHoldingListeners()
	t.listened.Release()
	return err
}

// CloseHoldingListeners implements transport.ListenerHolder: Close, but
// the control channel's listening socket stays bound for the next
// receiving Open on the same address (post-copy's reconnect), until
// Close. (The fabric's ports are new at every session.)
func (t *Transport) CloseHoldingListeners() error {
	s := t.slot.Take()
	if s == nil {
		return nil
	}
	return s.close()
}
