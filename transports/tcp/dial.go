package tcp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/netdial"
)

// openSend connects the source's streams: it dials every stream (the
// destination may start listening a moment later), sends HELLO on each and
// waits for the destination's HELLO on each, all within connect_timeout.
func openSend(ctx context.Context, s *session) error {
	if _, err := rand.Read(s.id[:]); err != nil {
		return fmt.Errorf("session id: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.connectTimeout)
	defer cancel()
	for i := range s.cfg.streams {
		c, err := dialRetry(ctx, s.cfg.dialAddr(), s.cfg.connectTimeout)
		if err != nil {
			closeStreams(s.streams)
			return err
		}
		sc, rc, err := secure(ctx, s.underFrames(i, c), transport.RoleSend, s.auth, s.plain)
		if err != nil {
			c.Close()
			closeStreams(s.streams)
			return authErr(ctx, i, err)
		}
		st := newStream(i, sc, c)
		st.rc = rc
		s.streams = append(s.streams, st)
	}
	// The urgent stream: the same address, credentials and handshake.
	c, err := dialRetry(ctx, s.cfg.dialAddr(), s.cfg.connectTimeout)
	if err != nil {
		closeStreams(s.streams)
		return err
	}
	sc, rc, err := secure(ctx, s.underFrames(len(s.streams), c), transport.RoleSend, s.auth, s.plain)
	if err != nil {
		c.Close()
		closeStreams(s.streams)
		return authErr(ctx, len(s.streams), err)
	}
	s.urgent = newStream(len(s.streams), sc, c)
	s.urgent.rc = rc
	s.urgent.urgent = true
	if err := handshake(ctx, s); err != nil {
		closeStreams(s.all())
		return err
	}
	s.log.Info("connected", "destination", s.cfg.dialAddr(), "streams", len(s.streams), "compress", s.cfg.compress)
	return nil
}

// underFrames is what stream idx's frames (TLS, or the frames
// themselves in plaintext) are written to: the socket c, or what the
// tests' wrapRaw puts between them.
func (s *session) underFrames(idx int, c *net.TCPConn) net.Conn {
	if s.wrapRaw != nil {
		return s.wrapRaw(idx, c)
	}
	return c
}

// dialRetry dials addr until ctx ends (netdial.Retry) and tunes the
// connection.
func dialRetry(ctx context.Context, addr string, timeout time.Duration) (*net.TCPConn, error) {
	c, err := netdial.Retry(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	tune(c)
	return c, nil
}

// tune sets what every stream wants: no Nagle delay for ACKs and
// messages. Socket buffers are left to the kernel's autotuning, which
// grows them further than a fixed size would (and measured faster on
// loopback than 4 MiB buffers).
func tune(c *net.TCPConn) {
	c.SetNoDelay(true)
}

// handshake sends the source's HELLO on every stream and checks the
// destination's answers. ctx ending cuts every read and write short.
func handshake(ctx context.Context, s *session) error {
	all := s.all()
	stop := deadlineOnCancel(ctx, all)
	defer stop()
	for _, st := range all {
		b, err := wire.AppendHello(nil, s.hello(st))
		if err == nil {
			_, err = st.conn.Write(b)
		}
		if err != nil {
			return handshakeErr(ctx, st, err)
		}
	}
	// When the destination refuses, the stream that carries its reason
	// may not be the first to fail: after a failure, look briefly at the
	// others' answers for an ABORT.
	var first error
	for i, st := range all {
		err := checkAnswer(s, st)
		if errors.Is(err, errRefused) {
			first = err
			break
		}
		if err != nil && first == nil {
			first = err
			for _, o := range all[i+1:] {
				o.conn.SetReadDeadline(time.Now().Add(goodbyeTimeout))
			}
		}
	}
	if first != nil && ctx.Err() != nil && !errors.Is(first, errRefused) {
		return fmt.Errorf("handshake: %w", ctx.Err())
	}
	return first
}

// errRefused marks a handshake the destination answered with ABORT or BYE.
var errRefused = errors.New("the destination refused the session")

// checkAnswer reads the destination's answer to stream st's HELLO.
func checkAnswer(s *session, st *stream) error {
	f, err := st.dec.Next()
	switch {
	case err != nil:
		return fmt.Errorf("handshake: %w%s", connErr(st, err), encryptionMismatch(err, "source", "destination"))
	case (f.Type == wire.TypeAbort || f.Type == wire.TypeBye) && f.Version < s.ver:
		// A destination answers in the version its source spoke, so this
		// one reads no newer version than its own.
		return fmt.Errorf("%w: %w (the destination speaks wire version %d, this source %d: upgrade Ferry on the destination)",
			errRefused, peerEnded(st, f), f.Version, s.ver)
	case f.Type == wire.TypeAbort || f.Type == wire.TypeBye:
		return fmt.Errorf("%w: %w", errRefused, peerEnded(st, f))
	case f.Type != wire.TypeHello || f.Hello.Session != s.id || f.Hello.Tag != s.tag || f.Hello.Stream != s.hello(st).Stream ||
		f.Hello.Urgent != st.urgent:
		return fmt.Errorf("%w: stream %d: the destination answered %v (session %x tag %x stream %d)",
			transport.ErrProtocol, st.idx, f.Type, f.Hello.Session, f.Hello.Tag[:4], f.Hello.Stream)
	case !slices.Equal(f.Hello.RAM, s.ram.Layout) || f.Hello.PageSize != pageSize:
		return layoutErr(s.ram.Layout, f.Hello.RAM, "source", "destination")
	}
	return nil
}

// encryptionMismatch names the likely cause when the peer speaks the
// other framing: TLS records where Ferry frames in the clear were
// expected, or the reverse. Each side takes `encryption` from its own
// job; nothing on the wire negotiates it. self and peer are the roles'
// names ("source", "destination").
func encryptionMismatch(err error, self, peer string) string {
	var rec tls.RecordHeaderError
	var magic *wire.MagicError
	switch {
	case errors.As(err, &rec) && string(rec.RecordHeader[:4]) == wire.Magic:
		return fmt.Sprintf(" (the %s sent Ferry frames in the clear: is `security { encryption = false }` set on the %[1]s's side only?)", peer)
	case errors.As(err, &magic) && magic.TLSRecord():
		return fmt.Sprintf(" (the %s sent TLS records: is `security { encryption = false }` set on the %s's side only?)", peer, self)
	}
	return ""
}

// hello is the HELLO either side sends on stream st: the session and its
// migration, a bulk stream's index, or the urgent stream's flag with
// index 0.
func (s *session) hello(st *stream) wire.Hello {
	h := wire.Hello{Session: s.id, Tag: s.tag, Stream: uint16(st.idx), Streams: uint16(len(s.streams)), PageSize: pageSize,
		RAM: s.ram.Layout}
	if st.urgent {
		h.Stream, h.Urgent = 0, true
	}
	return h
}

// deadlineOnCancel makes every stream's reads and writes fail once ctx
// ends; the returned stop clears the deadlines again.
func deadlineOnCancel(ctx context.Context, sts []*stream) (stop func()) {
	set := func(t time.Time) {
		for _, st := range sts {
			st.conn.SetDeadline(t)
		}
	}
	if d, ok := ctx.Deadline(); ok {
		set(d)
	}
	var mu sync.Mutex
	stopped := false
	after := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			set(time.Unix(1, 0))
		}
	})
	return func() {
		after()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		set(time.Time{})
	}
}

func handshakeErr(ctx context.Context, st *stream, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("stream %d: handshake: %w", st.idx, ctx.Err())
	}
	return fmt.Errorf("handshake: %w", connErr(st, err))
}

// layoutErr names both layouts.
func layoutErr(ours, theirs []wire.Region, we, they string) error {
	return fmt.Errorf("%w: the %s has %s, the %s has %s (start both VMs with the same memory size)",
		ErrLayoutMismatch, we, wire.FormatLayout(ours), they, wire.FormatLayout(theirs))
}

func closeStreams(sts []*stream) {
	for _, st := range sts {
		st.raw.Close()
	}
}

// dialAddr is where the source connects: connect if set, else listen.
func (c config) dialAddr() string {
	if c.connect != "" {
		return c.connect
	}
	return c.listen
}
