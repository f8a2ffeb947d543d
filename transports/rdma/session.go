package rdma

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/inbox"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// goodbyeTimeout bounds writing a BYE or ABORT to a peer that may have
// stopped reading.
const goodbyeTimeout = 500 * time.Millisecond

var errLocalClose = errors.New("rdma transport: session closed")

// counters are a session's Stats; rtt is a source's round trip in ns
// (rtt.go; 0: none).
type counters struct {
	wire, data, zero atomic.Uint64
	rtt              atomic.Int64
}

// session is one open migration: the control channel, the fabric
// endpoint, the mapped RAM and the goroutines that serve them. Its
// role, its end (End, Err, Done), the messages it received and what
// landed are its Base's (transports/internal/sessionbase).
type session struct {
	sessionbase.Base
	log   hclog.Logger
	cfg   config
	auth  *tls.Config
	plain bool
	// tag is the migration (transport.Tag): the source names it in HELLO
	// and URGENT; the destination takes only it, unless it is zero, and
	// then holds the tag of the source it took.
	tag       transport.Tag
	urgentTag transport.Tag // what URGENT names: tag (another only in tests)
	ram       *ram
	stats     *counters
	// warmed is closed once libfabric's first use in this process for
	// cfg.provider is done (fabric.Warm; awaitLibfabric).
	warmed <-chan struct{}

	ctrl     net.Conn     // TLS (or raw after the handshake, plaintext)
	raw      *net.TCPConn // the socket under ctrl
	dec      *wire.Decoder
	wlock    writeLock // one frame at a time on ctrl
	ep       *fabric.Endpoint
	caps     fabric.Caps
	punch    bool // zero pages by punching holes (not with pinning providers)
	populate bool // populate data runs' mappings ahead of the provider's copies (ram.go)

	wg sync.WaitGroup

	snd sender   // RoleSend
	rcv receiver // RoleReceive

	// The urgent path (urgent.go): a second control connection and a
	// second fabric endpoint.
	uctrl  net.Conn
	uraw   *net.TCPConn
	udec   *wire.Decoder
	uwlock writeLock
	uep    *fabric.Endpoint
	ucaps  fabric.Caps

	byes atomic.Int32 // BYEs from the peer: the session ends at the second (both channels)
	ord  order        // RoleSend: per-page order of bulk and urgent copies
	usnd usender      // RoleSend
	urcv ureceiver    // RoleReceive

	// answeredHook (tests only) runs on the source once the destination's
	// URGENT answer was read.
	answeredHook func()
	// wrapRaw (tests only) stands between the source's control socket
	// and what the session writes frames with: TLS, or the socket
	// itself in plaintext (raw stays the socket).
	wrapRaw func(net.Conn) net.Conn
}

func newSession(role transport.Role, log hclog.Logger, cfg config, m *ram, stats *counters) *session {
	return &session{Base: sessionbase.New(role), log: log, cfg: cfg, ram: m, stats: stats}
}

// fail ends the session with err (the first error wins), telling the
// peer with an ABORT of code (0: none). It first bounds every write in
// flight on both channels (a peer that stopped reading), then writes
// the last frame on each channel still whole within goodbyeTimeout
// (writeLast), then half-closes them; readers drain what the peer
// still sends until its end or the deadline. A channel on which the
// last frame did not go, while it went on the other, is left for
// close: its end of stream would race the frame to the peer, whose
// reader of it would report the end (of a cut frame: a broken one)
// instead of the reason (TestControlWriteStopsMidFrame). What it
// cannot do: tell a peer on a channel that a holder's write still
// holds at the bound, that takes no bytes, or that is broken (a write
// stopped inside a frame: what follows would be read as its rest).
func (s *session) fail(err error, code wire.Code) {
	if !s.End(err) {
		return
	}
	if errors.Is(err, transport.ErrClosed) || err == errLocalClose {
		s.log.Info("session ended", "error", err)
	} else {
		s.log.Error("session failed", "error", err)
	}
	var last []byte
	switch {
	case err == errLocalClose:
		last = wire.AppendBye(nil, "closed by the "+s.Role.String()+" side")
	case code != 0:
		last = wire.AppendAbort(nil, code, err.Error())
	}
	chans := s.channels()
	for _, c := range chans {
		c.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout)) // cuts a write in flight
	}
	told := make([]bool, len(chans))
	anyTold := false
	for i, c := range chans {
		if last != nil {
			told[i] = c.writeLast(last)
			anyTold = anyTold || told[i]
		}
	}
	for i, c := range chans {
		if told[i] || !anyTold {
			c.raw.CloseWrite()
		}
		c.conn.SetReadDeadline(time.Now().Add(goodbyeTimeout))
	}
}

// channel is one of a session's two control connections, as fail
// winds it down.
type channel struct {
	conn net.Conn     // frames (TLS, or raw in plaintext)
	raw  *net.TCPConn // the socket under it: half-close goes here
	lock *writeLock
}

// channels is the session's control channels that are open: the
// control channel, then the urgent one (none before Open set them up).
func (s *session) channels() []channel {
	var cs []channel
	if s.ctrl != nil {
		cs = append(cs, channel{s.ctrl, s.raw, &s.wlock})
	}
	if s.uctrl != nil {
		cs = append(cs, channel{s.uctrl, s.uraw, &s.uwlock})
	}
	return cs
}

// writeLast writes frame last (BYE, ABORT) on c once the session ended,
// unless c is broken, and reports whether all of it went: it waits for
// c's lock at most goodbyeTimeout, and writes under a deadline set once
// it holds it, since a holder that its own context cut with nothing
// written clears the deadline (writeOn) that fail set to cut it. Until
// 2026-12-07 the deadline was set only before the wait, and the wait
// had no bound: a call's write held behind a peer that stopped reading,
// whose context then ended, left the ABORT waiting on that channel for
// ever, and Close with it (TestAbortBoundedAfterCutWrite).
func (c channel) writeLast(last []byte) bool {
	deadline := time.Now().Add(goodbyeTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if c.lock.lock(ctx) != nil {
		return false // a holder's write outlived its cut: nothing goes behind it
	}
	defer c.lock.unlock()
	if c.lock.broken.Load() {
		return false
	}
	c.conn.SetWriteDeadline(deadline)
	n, err := c.conn.Write(last)
	if err != nil && n > 0 {
		c.lock.broken.Store(true)
	}
	return err == nil
}

// sendMessage implements SendMessage over the control channel (inside
// TLS unless the credentials are plaintext).
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	hdr, err := sessionbase.MsgHeader("send message", m)
	if err != nil {
		return err
	}
	return s.writeFrame(ctx, hdr, m.Payload)
}

// writeFrame writes one control frame (header and payload).
func (s *session) writeFrame(ctx context.Context, bufs ...[]byte) error {
	return s.writeOn(ctx, s.ctrl, &s.wlock, "control channel", bufs...)
}

// writeOn writes one frame on conn (the control or the urgent channel),
// holding lock; waiting for it, it returns ctx's error when ctx ends,
// and so it does when ctx cut its write before any byte went. A write
// that fails otherwise fails the session with CodeFailed, as tcp's
// writers do, and returns the session's error (writeFailed says what
// cut it); one that stopped inside the frame (ctx cut it half-way,
// the socket broke) first marks the channel broken, so that the ABORT
// goes on the other channel only: on this one the peer would read it
// as the cut frame's rest (TestControlWriteStopsMidFrame). Until
// 2026-12-07 a failed write ended the session with no ABORT. Over TLS
// a cut write fails the session even when none of the frame's bytes
// counted as written: crypto/tls refuses every write after one a
// deadline cut (and counts none of a record it cut half-way, whose
// start the peer may have read), so the channel can carry no frame,
// and it is marked broken. Until 2026-12-07 such a call returned its
// context's end and the session went on, to fail at the channel's next
// write with "the write was cut on this side with 0 of a frame's 37
// bytes written: i/o timeout", naming neither the context nor TLS
// (TestCutTLSWriteSaysWhy); in plaintext the session still goes on.
func (s *session) writeOn(ctx context.Context, conn net.Conn, lock *writeLock, what string, bufs ...[]byte) error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := lock.lock(ctx); err != nil {
		return err
	}
	if err := s.Err(); err != nil { // ended while it waited: a holder may have cleared fail's deadline
		lock.unlock()
		return err
	}
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Unix(1, 0)); close(cut) })
	b := net.Buffers(bufs)
	size := int64(0)
	for _, buf := range bufs {
		size += int64(len(buf))
	}
	n, err := b.WriteTo(conn)
	s.stats.wire.Add(uint64(n))
	ctxCut := !stop()
	if ctxCut {
		// ctx ended during the write, or just after it: once the cut's
		// deadline is set, clear it, whatever went (fail sets its own
		// again: writeLast). Until 2026-12-07 it was cleared only when
		// nothing went, so a cut after a whole frame left it on the
		// channel and the next write failed the session
		// (TestWriteCutAfterItWent).
		<-cut
		conn.SetWriteDeadline(time.Time{})
		if _, isTLS := conn.(*tls.Conn); n == 0 && err != nil && !isTLS {
			lock.unlock()
			return ctx.Err()
		}
	}
	if err == nil {
		lock.unlock()
		return nil
	}
	_, isTLS := conn.(*tls.Conn)
	if n > 0 || isTLS && errors.Is(err, os.ErrDeadlineExceeded) {
		lock.broken.Store(true)
	}
	lock.unlock()
	err = writeFailed(what, err, ctxCut, ctx.Err(), n, size, isTLS)
	s.fail(err, wire.CodeFailed)
	return s.Err() // err, unless the session had ended: then the deadline fail set cut the write
}

// writeFailed is the error of a write of a size-byte frame that failed
// with err once n bytes went. A past deadline ("i/o timeout") is this
// side's: its call's context cut the write (cut: ctxErr is why) or the
// session's end did (fail's deadline; its reason is the session's
// error, which writeOn returns then); sessionbase.CutWrite says which,
// and over TLS (overTLS), whichever of the frame's records the cut met,
// TLS's rules (until 2026-12-08 only a cut before any byte went said
// them: TestCutTLSWriteSaysWhy, "second record"). Any other failure is
// the channel's (the peer closed or reset it, the link broke), of class
// transport.ErrClosed as tcp's are. Until 2026-12-07 both said
// "transport session closed by the peer" and matched ErrClosed
// (TestCutWriteSaysWhy). What it cannot tell: a deadline that passed
// as the peer also went away.
func writeFailed(what string, err error, cut bool, ctxErr error, n, size int64, overTLS bool) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", what, err, transport.ErrClosed)
	}
	if !cut {
		ctxErr = nil // fail's deadline, whatever the context did since
	}
	return sessionbase.CutWrite(what, "channel", err, ctxErr, n, size, overTLS)
}

// writeLock lets one frame at a time onto a channel. A writer waits for
// it under its context: a writer that holds it may wait in its write as
// long as the channel takes no bytes, and some write under no context of
// the engine's (the source's PROGRESS, the destination's ACK and MARKED,
// bounded only by the session's end), so a mutex would hold an engine
// call past its context behind them. Its zero value is unlocked.
type writeLock struct {
	once   sync.Once
	ch     chan struct{} // holds a token while locked
	broken atomic.Bool   // a write stopped inside a frame: no frame may follow on the channel
}

// lock takes l, or returns ctx's error once ctx ended first.
func (l *writeLock) lock(ctx context.Context) error {
	l.once.Do(func() { l.ch = make(chan struct{}, 1) })
	select {
	case l.ch <- struct{}{}:
		return nil
	default:
	}
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *writeLock) unlock() { <-l.ch }

// close ends the session from this side and releases everything.
func (s *session) close() error {
	s.fail(errLocalClose, 0)
	s.wg.Wait()
	s.raw.Close()
	if s.uraw != nil {
		s.uraw.Close()
	}
	if s.ep != nil {
		s.ep.Close() // deregisters RAM before it is unmapped
	}
	if s.uep != nil {
		s.uep.Close()
	}
	s.snd.release()
	s.rcv.release()
	s.usnd.release()
	s.urcv.release()
	return s.ram.Unmap()
}

// readCtrl reads the peer's control frames until the session ends;
// handle takes the role's own frames.
func (s *session) readCtrl(handle func(wire.Frame) error) {
	s.readFrames(s.dec, "control channel", &s.Msgs, handle)
}

// readFrames reads one channel's frames until the session ends: engine
// messages (MSG with seq 0) go to msgs, handle takes the role's own
// frames. The session ends when the peer said BYE on both channels (so
// that what it sent before on either is taken first), or at an ABORT.
// A failure of its own it tells the peer by an ABORT of
// sessionbase.AbortCode's code on both channels, a failed read of the
// channel included (the peer closed it without BYE, it broke, its TLS
// failed): CodeFailed, as tcp sends on the streams still whole, so the
// peer fails at once with this side's reason instead of finding the
// channels closed, or waiting for its stall watch where they are not
// (TestChannelReadFails). A peer's BYE or ABORT it answers with none.
// What it cannot do: tell a peer whose channels both broke (the write
// fails, fail's deadline bounds it) or that stopped reading both; on a
// channel whose last write stopped inside a frame no ABORT goes (fail).
//
// On the destination it also reports what landed to a pusher
// (transport.Pusher) when the input runs dry, or every deliverEvery
// frames while it does not.
func (s *session) readFrames(dec *wire.Decoder, what string, msgs *inbox.Queue, handle func(wire.Frame) error) {
	for frames := 1; ; frames++ {
		if s.Role == transport.RoleReceive && (dec.Buffered() == 0 || frames%deliverEvery == 0) {
			s.Landed.Deliver()
		}
		f, err := dec.Next()
		if err != nil {
			switch {
			case errors.Is(err, transport.ErrProtocol):
				err = fmt.Errorf("%s: %w", what, err)
			case errors.Is(err, io.EOF):
				err = fmt.Errorf("the peer closed the %s: %w", what, transport.ErrClosed)
			default:
				err = fmt.Errorf("%s lost (%w): %w", what, err, transport.ErrClosed)
			}
			s.fail(err, sessionbase.AbortCode(err)) // CodeFailed unless the peer broke the format
			return
		}
		if s.Role == transport.RoleReceive {
			s.stats.wire.Add(uint64(wire.HeaderSize + f.Length))
		}
		switch f.Type {
		case wire.TypeMsg:
			if f.Seq == 0 && msgs == &s.Umsgs && s.Answering.Answers(f.Kind) {
				err = s.answer(f.Payload)
			} else if f.Seq == 0 {
				err = msgs.Push(transport.Message{Kind: f.Kind, Payload: f.Payload})
			} else {
				err = handle(f)
			}
		case wire.TypeBye:
			if s.byes.Add(1) < 2 {
				return // the other channel still carries what the peer sent before
			}
			s.fail(fmt.Errorf("the peer ended the session (%s): %w", f.Reason, transport.ErrClosed), 0) // nothing to tell a peer that ended it
			return
		case wire.TypeAbort:
			s.fail(fmt.Errorf("the peer aborted the session (%v: %s): %w", f.Code, f.Reason, transport.ErrClosed), 0)
			return
		default:
			err = handle(f)
		}
		if err != nil {
			// A failure here, ErrClosed or not (a write of an ACK, a
			// sink that refused), is this side's unless it wraps
			// ErrProtocol: the peer hears CodeFailed, as from tcp.
			s.fail(err, sessionbase.AbortCode(err))
			return
		}
	}
}
