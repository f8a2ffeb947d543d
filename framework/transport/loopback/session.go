package loopback

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

var errClosedHere = errors.New("loopback: session closed")

// session is one open connection. The reader goroutine applies what the
// peer sends; writers take wlock for one whole frame.
type session struct {
	role  transport.Role
	conn  net.Conn
	raw   net.Conn // under conn's TLS (conn itself in plaintext): what fail closes
	ram   *ram
	queue int // bytes of received messages held at most

	wlock chan struct{}
	wbuf  []byte // under wlock

	flushSeq uint64 // Flush's goroutine only

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when anything below changes
	acked   uint64
	msgs    []transport.Message
	umsgs   []transport.Message // urgent ones
	queued  int                 // payload bytes in msgs and umsgs
	err     error               // why the session ended; nil while it runs

	// The urgent path: bulkQueued counts the bulk PAGES frames the
	// sender wrote, bulkSeen those the receiver applied (the reader's
	// own); lane orders them against urgent copies; landed feeds Landed.
	bulkQueued atomic.Uint64
	bulkSeen   uint64
	lane       transport.Lane
	landed     transport.LandedQueue

	readerDone chan struct{}
	bytesWire  atomic.Uint64
	pagesData  atomic.Uint64
	pagesZero  atomic.Uint64
	rtt        atomic.Int64 // the last Flush's FLUSH to ACK, in ns (Stats.RTT); 0 before one
}

func newSession(role transport.Role, conn net.Conn, r *ram, queue int) *session {
	raw := conn
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		raw = tc.NetConn()
	}
	s := &session{role: role, conn: conn, raw: raw, ram: r, queue: queue, wlock: make(chan struct{}, 1),
		changed: make(chan struct{}), readerDone: make(chan struct{})}
	go s.readLoop()
	return s
}

// fail ends the session with err (the first reason wins) and closes the
// connection, which stops the reader and any blocked writer. It closes
// the connection under TLS, without TLS's close_notify: BYE, inside
// TLS, is how a session says it ends; every frame written whole before
// has reached the peer (TLS buffers none), which then reads the end of
// the stream as it did after close_notify. close_notify would wait for
// the peer to read it, up to crypto/tls's 5 s, on net.Pipe (which
// buffers nothing) whenever the peer's reader has gone or is writing
// its own: two sides closing at once each waited for the other
// (TestCloseNotHeldByPeerNotReading). What it cannot tell the peer: a
// frame cut short by this end reads as a torn stream, as before.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.notify()
		s.landed.End(err)
	}
	s.mu.Unlock()
	s.raw.Close()
}

// notify wakes the waiters; s.mu is held.
func (s *session) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *session) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close says BYE if it can within a second, then ends the session and
// joins the reader.
func (s *session) close() {
	if s.failed() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.send(ctx, func(b []byte) ([]byte, error) { return finish(appendHeader(b, frameBye)), nil })
		cancel()
	}
	s.fail(errClosedHere)
	<-s.readerDone
}

// send writes the frame build appends to its argument, whole, honouring
// ctx. A frame cut short by ctx or an error ends the session: the stream
// would be torn.
func (s *session) send(ctx context.Context, build func([]byte) ([]byte, error)) error {
	select {
	case s.wlock <- struct{}{}:
		defer func() { <-s.wlock }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.failed(); err != nil {
		return err
	}
	frame, err := build(s.wbuf[:0])
	if err != nil {
		return err
	}
	s.wbuf = frame[:0]
	n, fired, err := writeCtx(ctx, s.conn, frame)
	if s.role == transport.RoleSend {
		s.bytesWire.Add(uint64(n))
	}
	switch {
	case err == nil:
		return nil
	case fired && n == 0:
		return ctx.Err()
	case fired:
		s.fail(fmt.Errorf("loopback: a write was cut short: %w", ctx.Err()))
		return ctx.Err()
	}
	s.fail(fmt.Errorf("%w: %v", transport.ErrClosed, err))
	return s.failed()
}

// writeCtx writes b to c, moving c's write deadline into the past if ctx
// ends first; fired says whether it did.
func writeCtx(ctx context.Context, c net.Conn, b []byte) (n int, fired bool, err error) {
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			fired = true
			c.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	n, err = c.Write(b)
	stop()
	mu.Lock()
	done = true
	mu.Unlock()
	if fired {
		c.SetWriteDeadline(time.Time{})
	}
	return n, fired, err
}

// readLoop applies the peer's frames until the connection ends.
func (s *session) readLoop() {
	defer close(s.readerDone)
	br := bufio.NewReaderSize(s.conn, 64<<10)
	buf := make([]byte, maxBody)
	for {
		typ, body, err := readFrame(br, buf)
		if err != nil {
			switch {
			case errors.Is(err, transport.ErrProtocol):
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				err = fmt.Errorf("%w: the connection ended", transport.ErrClosed)
			default:
				err = fmt.Errorf("%w: %v", transport.ErrClosed, err)
			}
			s.fail(err)
			return
		}
		if s.role == transport.RoleReceive {
			s.bytesWire.Add(uint64(headerLen + len(body)))
		}
		if err := s.handle(typ, body); err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *session) handle(typ byte, body []byte) error {
	switch {
	case typ == framePages && s.role == transport.RoleReceive:
		r, data, err := parsePages(body, s.ram.pages)
		if err != nil {
			return err
		}
		s.bulkSeen++
		s.count(r)
		s.lane.Lock()
		defer s.lane.Unlock()
		return s.lane.Bulk(s.bulkSeen, r.First, r.Count, func(first, n uint64) error {
			sub := transport.PageRun{First: first, Count: n, Kind: r.Kind}
			if r.Kind == transport.KindData {
				data := data[(first-r.First)*framework.PageSize : (first-r.First+n)*framework.PageSize]
				return s.apply(sub, data)
			}
			return s.apply(sub, nil)
		})
	case typ == frameUPage && s.role == transport.RoleReceive:
		if len(body) < 8 {
			return fmt.Errorf("%w: UPAGES of %d bytes", transport.ErrProtocol, len(body))
		}
		after := binary.BigEndian.Uint64(body)
		r, data, err := parsePages(body[8:], s.ram.pages)
		if err != nil {
			return err
		}
		s.count(r)
		s.lane.Lock()
		defer s.lane.Unlock()
		s.lane.Urgent(r.First, r.Count, after)
		return s.apply(r, data)
	case typ == frameFlush && s.role == transport.RoleReceive:
		seq, err := parseSeq(body)
		if err != nil {
			return err
		}
		return s.send(context.Background(), func(b []byte) ([]byte, error) { return appendSeq(b, frameAck, seq), nil })
	case typ == frameAck && s.role == transport.RoleSend:
		seq, err := parseSeq(body)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.acked = max(s.acked, seq)
		s.notify()
		s.mu.Unlock()
		return nil
	case typ == frameMsg || typ == frameUMsg:
		m, err := parseMsg(body)
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.queued+len(m.Payload) > s.queue {
			return fmt.Errorf("%w: the peer sent more than %d bytes of messages nobody received", transport.ErrProtocol, s.queue)
		}
		if typ == frameUMsg {
			s.umsgs = append(s.umsgs, m)
		} else {
			s.msgs = append(s.msgs, m)
		}
		s.queued += len(m.Payload)
		s.notify()
		return nil
	case typ == frameBye:
		return fmt.Errorf("%w: the peer closed the session", transport.ErrClosed)
	}
	return fmt.Errorf("%w: unexpected frame type %d on the %v side", transport.ErrProtocol, typ, s.role)
}

// wait blocks until ready (called with s.mu held) holds, the session
// ends, or ctx does; it returns with s.mu held when ready holds.
func (s *session) wait(ctx context.Context, ready func() bool) error {
	for {
		s.mu.Lock()
		if ready() {
			return nil
		}
		err, ch := s.err, s.changed
		s.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *session) stats() transport.Stats {
	return transport.Stats{BytesWire: s.bytesWire.Load(), PagesData: s.pagesData.Load(), PagesZero: s.pagesZero.Load(),
		RTT: time.Duration(s.rtt.Load())}
}

func (s *session) count(r transport.PageRun) {
	if r.Kind == transport.KindZero {
		s.pagesZero.Add(r.Count)
	} else {
		s.pagesData.Add(r.Count)
	}
}

// apply writes one run into guest RAM and reports it to Landed.
func (s *session) apply(r transport.PageRun, data []byte) error {
	var err error
	if r.Kind == transport.KindZero {
		err = s.ram.zero(r.First, r.Count)
	} else {
		err = s.ram.write(r.First, data)
	}
	if err == nil {
		s.landed.Push(r)
	}
	return err
}
