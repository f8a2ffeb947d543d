package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// goodbyeTimeout bounds writing a BYE or ABORT to a peer that may have
// stopped reading.
const goodbyeTimeout = 500 * time.Millisecond

// errLocalClose is a session's error after Close.
var errLocalClose = errors.New("tcp transport: session closed")

// counters are a session's Stats.
type counters struct {
	wire, data, zero, compressed atomic.Uint64
}

func (c *counters) reset() {
	c.wire.Store(0)
	c.data.Store(0)
	c.zero.Store(0)
	c.compressed.Store(0)
}

// session is one open migration: its streams, mapped RAM and goroutines.
// Its role, its end (End, Err, Done), the messages it received and what
// landed are its Base's (transports/internal/sessionbase).
type session struct {
	sessionbase.Base
	log   hclog.Logger
	cfg   config
	auth  *tls.Config // from the OpenRequest's credentials
	plain bool        // frames travel in the clear after the TLS handshake
	ram   *ram
	id    [wire.SessionSize]byte
	// tag is the migration (transport.Tag): the source names it on every
	// stream; the destination takes only it, unless it is zero, and then
	// holds the tag of the session it took.
	tag [wire.TagSize]byte
	// ver is the wire version the session speaks: wire.Version on the
	// source; on the destination the one its source opened the streams
	// with, in which it answers (inVersion).
	ver     uint8
	streams []*stream // the bulk streams
	urgent  *stream   // the urgent stream (urgent.go)
	stats   *counters

	// Receive side of the urgent path: one Lane per bulk stream orders
	// its pages against urgent copies (Landed, Base's, feeds Landed).
	lanes []transport.Lane

	wg   sync.WaitGroup
	byes atomic.Int32 // streams on which the peer said BYE
	// wound is closed once the wind-down of the session's end (BYE or
	// ABORT, by whoever ended it) is over: close waits for it.
	wound chan struct{}
	// peerEnded is closed once a reader met the peer's end of a stream
	// (readFailed) or its BYE or ABORT (peerBye, peerAborted): the
	// peer's session has ended, its reason is settled, and a stream the
	// wind-down left open may close (closeWhenHeard).
	peerEnded     chan struct{}
	peerEndedOnce sync.Once

	// Send side, used by the engine's goroutine only.
	flushTarget  []uint64      // per stream, the ACK the last Flush waits for
	flushPending bool          // the last Flush has not seen its ACKs yet
	ackNote      chan struct{} // a stream's ACK advanced

	// wrapRaw (tests only) stands between a source stream's socket
	// (idx: the stream's index, the urgent stream's is len(streams))
	// and what writes its frames: TLS, or the frames themselves in
	// plaintext (raw stays the socket).
	wrapRaw func(idx int, c net.Conn) net.Conn
}

// stream is one connection of a session.
type stream struct {
	idx    int
	conn   net.Conn     // frames: the TLS connection, or raw when plaintext
	raw    *net.TCPConn // the socket: half-close and close go here, never blocked by TLS
	rc     *recordConn  // under the TLS connection (nil in plaintext): gathers a batch's records
	dec    *wire.Decoder
	wlock  chan struct{} // held while one frame is written
	broken atomic.Bool   // a write stopped inside a frame
	// left: the failure's wind-down left the stream open for the peer
	// to hear its ABORT on another (closeWhenHeard closes it); set by
	// fail before wound is closed, read by close's wind-down after.
	left bool

	// Send side.
	queue  chan batch
	queued atomic.Uint64 // last batch number queued (written by the engine goroutine, read by the urgent sender)
	sent   atomic.Uint64 // last batch number the writer started to write
	acked  atomic.Uint64 // last batch number the destination acknowledged
	w      writer

	// Receive side: the next batch number expected, and the buffer each
	// batch is read into before it is written into guest RAM.
	next    uint64
	staging []byte

	urgent bool // the session's urgent stream
	// writeFrame's scratch over TLS (inRecords, under wlock): a frame's
	// header joined with its payload's first bytes, and the buffers
	// (vec, empty outside writeFrame: it refers to the caller's payload).
	flat []byte
	vec  [2][]byte
}

func newSession(role transport.Role, log hclog.Logger, cfg config, m *ram, stats *counters) *session {
	return &session{Base: sessionbase.New(role), log: log, cfg: cfg, ram: m, stats: stats,
		ackNote: make(chan struct{}, 1), wound: make(chan struct{}), peerEnded: make(chan struct{})}
}

func newStream(idx int, c net.Conn, raw *net.TCPConn) *stream {
	return &stream{idx: idx, conn: c, raw: raw, dec: wire.NewDecoder(c), wlock: make(chan struct{}, 1), next: 1}
}

// fail ends the session with err (the first error wins): it tells the
// peer why with an ABORT of code (0: no ABORT) on every stream still
// whole, then winds the connections down.
func (s *session) fail(err error, code wire.Code) {
	if !s.End(err) {
		return
	}
	if errors.Is(err, transport.ErrClosed) {
		s.log.Info("session ended by the peer", "error", err)
	} else {
		s.log.Error("session failed", "error", err)
	}
	var last []byte
	if code != 0 {
		last = s.inVersion(wire.AppendAbort(nil, code, err.Error()))
	}
	if left, deadline := s.windDown(last); len(left) > 0 {
		for _, st := range left {
			st.left = true
		}
		s.wg.Go(func() { s.closeWhenHeard(left, deadline) })
	}
	close(s.wound)
}

// windDown runs once done is closed: it bounds every read and write in
// flight, writes last (BYE or ABORT, if any) on every stream still whole
// (writeLast) and half-closes them. Readers then drain what the peer
// still sends until its end of stream or the deadline, so that no unread
// data makes the final close reset the connection under frames the peer
// has yet to read (a BYE after the last message, say). A stream on which
// last did not go, while it went on another, is returned (left) with the
// deadline, untouched: its end of stream would race last to the peer,
// whose reader of it would report that end (of a cut frame or TLS
// record: a broken one) instead of the reason (TestCutTLSWriteSaysWhy);
// fail closes it once the peer heard, or at the deadline
// (closeWhenHeard). With last gone nowhere a broken stream is closed at
// once: no reason races its end, and it can carry no frame. A stream
// an earlier wind-down left (close's, after a failure) it leaves alone:
// it is closeWhenHeard's. What it cannot do: tell a peer on a stream
// that is broken, that a holder's write still holds at the bound, or
// that takes no bytes.
func (s *session) windDown(last []byte) (left []*stream, deadline time.Time) {
	deadline = time.Now().Add(goodbyeTimeout)
	all := s.all()
	for _, st := range all {
		st.conn.SetDeadline(deadline)
	}
	// Each stream on its own goroutine: one whose lock a held write
	// keeps until the deadline would otherwise take the whole bound,
	// and the writes on the streams after it would all fail
	// (TestHeldStreamLeavesAbortOnOthers).
	told := make([]bool, len(all))
	if last != nil {
		var wg sync.WaitGroup
		for i, st := range all {
			wg.Go(func() { told[i] = st.writeLast(last, deadline) })
		}
		wg.Wait()
	}
	anyTold := slices.Contains(told, true)
	// Half-close the socket itself: a TLS close_notify could block on a
	// peer that stopped reading; the frames' BYE and ABORT already say
	// whether the stream ended on purpose.
	for i, st := range all {
		switch {
		case st.left:
			// closeWhenHeard's: ending it now would race the ABORT
			// (TestCloseLeavesBrokenStreamToPeer).
		case told[i]:
			st.raw.CloseWrite()
		case anyTold:
			left = append(left, st)
		case st.broken.Load():
			st.raw.Close()
		default:
			st.raw.CloseWrite()
		}
	}
	return left, deadline
}

// closeWhenHeard closes the streams the wind-down left open (windDown)
// once the peer's session has ended (a reader met its end of stream,
// its BYE or its ABORT: peerEnded), whose reason is then settled
// whatever it reads on them, or at the wind-down's deadline, whichever
// comes first, so that neither their descriptors nor the peer's readers
// of them wait for Close (which waits for this instead). What it cannot tell: whether the peer read the reason before
// it ended (a peer that crashed ends too).
func (s *session) closeWhenHeard(left []*stream, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-s.peerEnded:
	case <-t.C:
	}
	closeStreams(left)
}

// readFailed fails the session after reading st failed with err, and
// when err is the peer's end of the stream (its orderly end, or a
// reset) notes that the peer's session has ended (notePeerEnded): a
// peer ends a stream only once its session ended, or by dying. What it
// cannot tell: a reset that a middlebox sent, the peer still running.
func (s *session) readFailed(st *stream, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		s.notePeerEnded()
	}
	s.fail(connErr(st, err), sessionbase.AbortCode(err))
}

// peerAborted fails the session with the peer's ABORT f, read on st,
// and notes that the peer's session has ended (notePeerEnded): a peer
// sends ABORT only once it did, and the reader stops at it, never to
// meet the stream's end (TestPeerAbortEndsBrokenStreamWait).
func (s *session) peerAborted(st *stream, f wire.Frame) {
	s.notePeerEnded()
	s.fail(peerEnded(st, f), 0)
}

// notePeerEnded closes peerEnded, once.
func (s *session) notePeerEnded() {
	s.peerEndedOnce.Do(func() { close(s.peerEnded) })
}

// writeLast writes frame last (BYE, ABORT) on st once the session ended,
// unless st is broken, and reports whether all of it went: it waits for
// the write lock until deadline, then writes under deadline, set again
// once it holds the lock, since a holder that its own context cut clears
// the one windDown set to cut it (writeCtx).
func (st *stream) writeLast(last []byte, deadline time.Time) bool {
	if !st.lockUntil(deadline) {
		return false
	}
	defer st.unlock()
	if st.broken.Load() {
		return false
	}
	st.conn.SetWriteDeadline(deadline)
	n, err := st.conn.Write(last)
	if err != nil {
		st.failedAfter(int64(n))
	}
	return err == nil
}

// close ends the session from this side: BYE to the peer if it is still
// running, then every goroutine joined, every connection closed and the
// RAM unmapped. After a failure it first waits for the failure's
// wind-down (bounded by goodbyeTimeout, as every wind-down is): its own
// would half-close every stream under the ABORT still going out, and
// the peer would read their end instead of the reason
// (TestCloseDuringFailureKeepsAbort). A stream that wind-down left open
// it leaves to closeWhenHeard, whose end it then waits for (the same
// bound, from the failure): closed at once, its end would race the
// ABORT to a peer still reading towards it
// (TestCloseLeavesBrokenStreamToPeer).
func (s *session) close() error {
	if s.End(errLocalClose) {
		s.windDown(s.inVersion(wire.AppendBye(nil, "closed by the "+s.Role.String()+" side")))
		close(s.wound)
	} else {
		<-s.wound
		s.windDown(nil) // bounds what an earlier failure left running
	}
	s.wg.Wait()
	closeStreams(s.all())
	return s.ram.Unmap()
}

// peerBye counts a BYE: the session ends once every stream said it, so
// that whatever the peer sent before its BYE on each stream (the last
// message on stream 0) is taken in first. The first BYE already says
// that the peer's session ended (notePeerEnded), as an ABORT does.
func (s *session) peerBye(st *stream, f wire.Frame) {
	s.notePeerEnded()
	if int(s.byes.Add(1)) == len(s.all()) {
		s.fail(peerEnded(st, f), 0)
	}
}

// inVersion rewrites frame b (any type but HELLO) into the version the
// session speaks, when its source spoke the previous one
// (docs/ARCHITECTURE.md#versions), and returns it.
func (s *session) inVersion(b []byte) []byte {
	if s.ver != 0 && s.ver != wire.Version {
		wire.SetVersion(b, s.ver) // every frame but HELLO has the same layout in both
	}
	return b
}

// all is every stream of the session: the bulk ones, then the urgent one.
func (s *session) all() []*stream {
	if s.urgent == nil {
		return s.streams
	}
	return append(s.streams[:len(s.streams):len(s.streams)], s.urgent)
}

// connErr classifies an error from reading or writing stream st.
func connErr(st *stream, err error) error {
	switch {
	case errors.Is(err, transport.ErrProtocol):
		return fmt.Errorf("stream %d: %w", st.idx, err)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("stream %d: the peer closed the connection: %w", st.idx, transport.ErrClosed)
	}
	return fmt.Errorf("stream %d: connection lost (%w): %w", st.idx, err, transport.ErrClosed)
}

// peerEnded turns a BYE or ABORT from the peer into the session's error.
func peerEnded(st *stream, f wire.Frame) error {
	switch {
	case f.Type == wire.TypeBye:
		return fmt.Errorf("stream %d: the peer ended the session (%s): %w", st.idx, f.Reason, transport.ErrClosed)
	case f.Code == wire.CodeLayout:
		return fmt.Errorf("%w: %s: %w", ErrLayoutMismatch, f.Reason, transport.ErrClosed)
	case f.Code == wire.CodeOtherMigration:
		return fmt.Errorf("%w: stream %d refused (%s): %w", transport.ErrWrongMigration, st.idx, f.Reason, transport.ErrClosed)
	}
	return fmt.Errorf("stream %d: the peer aborted the session (%v: %s): %w", st.idx, f.Code, f.Reason, transport.ErrClosed)
}

// lock takes the stream's write lock, unless ctx or the session ends first.
func (st *stream) lock(ctx context.Context, done <-chan struct{}) error {
	select {
	case st.wlock <- struct{}{}:
	case <-done:
		return errSessionDone
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done: // nothing goes after the BYE or ABORT
		st.unlock()
		return errSessionDone
	default:
		return nil
	}
}

// lockUntil takes the write lock if it frees up before deadline.
func (st *stream) lockUntil(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case st.wlock <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (st *stream) unlock() { <-st.wlock }

// errSessionDone stands for "the session ended": callers return the
// session's error instead.
var errSessionDone = errors.New("session ended")

// noCancel is the context of writes that only the session's end cuts short.
var noCancel = context.Background()
