package rdma

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// A gate admits the connections to a destination's control port for the
// whole of its Open (openReceive), across the source's tries: each
// connection in its own goroutine, authenticated with the job's
// credentials and its first setup frame read within handshakeBound.
// That frame says where it goes:
//
//	control port ─► accept ─► TLS, first setup frame ─┬─ HELLO ──► tries ─► openReceive's next try
//	                                                   │            (a try of the same tag in setup,
//	                                                   │             urgent channel not yet accepted:
//	                                                   │             abandoned at once, errSuperseded)
//	                                                   └─ URGENT ─► the try in setup, if it names
//	                                                                its nonce and tag and has not
//	                                                                ended; else closed
//
// A source runs one try at a time, so its HELLO during a try of its own
// means that try ended (or stalled: its host) and is taken at once, if
// its connection was accepted after that try's (a HELLO read late on an
// older connection, a starved admission or a credential holder that
// held its HELLO back, is no next try: it waits, as below); a
// HELLO naming another tag (a destination that waits for any, the zero
// tag) waits until the try in setup ends, and if that try is taken, it
// is answered OTHER. Once a try's urgent channel is accepted the source
// may have decided it (READY), so a HELLO then waits for the try's end
// too. A stranger learns nothing and cannot end the wait; a host holding
// more than floodShare connections mid-handshake loses its own first.
//
// It cannot tell a try that is over from one that a second, concurrent
// Open of the same migration's source still runs: the newer takes the
// destination and the older fails (Ferry's engine opens one at a time).
// A HELLO admitted in the instant between openReceive taking a try and
// that try's setup beginning waits for that try's end, as in the
// READY window.
type gate struct {
	s     *session
	ln    *net.TCPListener
	want  transport.Tag // the OpenRequest's: zero admits any source's
	tries chan arrival  // unbuffered: an arrival waits in its goroutine
	done  chan struct{} // closed by close
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[*net.TCPConn]transport.Pending // being admitted
	cur     *try                               // the try in setup
	taken   transport.Tag                      // the tag of the try taken, once closed
	seq     uint64                             // connections accepted so far
	handed  uint64                             // the seq of the HELLO next handed to openReceive
	refused error                              // the last source refused for another setup version

	waiting func() // tests only: called as an admitted HELLO starts to wait for openReceive
}

// arrival is an admitted HELLO: its connection, what admission made of
// it, and err if it fails the Open (ErrLayoutMismatch, answered REFUSE).
type arrival struct {
	c   *net.TCPConn
	a   admitted
	err error
	seq uint64 // the order its connection was accepted in
}

// admitted is what admission made of a connection: its secure channel
// and the tag it named (the urgent channel's: the session's).
type admitted struct {
	sc  net.Conn
	tag transport.Tag
}

// try is the gate's part of one try in setup (setupReceive).
type try struct {
	tag      transport.Tag
	unonce   []byte
	ctx      context.Context // the try's setup: ended, the try is over
	abandon  context.CancelCauseFunc
	urgent   chan arrival // capacity 1: its urgent channel, answered
	answered bool         // its urgent channel was accepted
	seq      uint64       // its HELLO's connection's accept order (begin)
}

// errSuperseded is the error of a destination's setup that a next try
// of the same source (HELLO, same tag) replaced: openReceive drops it
// and takes that one.
var errSuperseded = errors.New("a next try of the source's came during this one's setup")

// openGate starts admitting connections on ln; close stops it.
func (s *session) openGate(ln *net.TCPListener) *gate {
	g := &gate{s: s, ln: ln, want: s.tag, tries: make(chan arrival), done: make(chan struct{}),
		pending: map[*net.TCPConn]transport.Pending{}}
	g.wg.Go(g.acceptLoop)
	return g
}

// acceptLoop accepts until close. An accept error other than close's
// (too many open files, say) is retried after a pause, growing to 1 s,
// for the gate lives as long as the Open.
func (g *gate) acceptLoop() {
	pause := 5 * time.Millisecond
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			if g.wait(pause) {
				return // close set a deadline in the past
			}
			g.s.log.Warn("accepting on the control port", "error", err, "retry_in", pause)
			pause = min(2*pause, time.Second)
			continue
		}
		pause = 5 * time.Millisecond
		c := nc.(*net.TCPConn)
		g.mu.Lock()
		select {
		case <-g.done:
			g.mu.Unlock()
			c.Close()
			continue
		default:
		}
		host := transport.HostOf(c.RemoteAddr())
		if len(g.pending) >= maxPending {
			if victim, ok := transport.Evictable(g.pending, host, floodShare); ok {
				victim.Close() // its handshake fails; newer callers get a chance
				delete(g.pending, victim)
			}
		}
		g.pending[c] = transport.Pending{Host: host, Since: time.Now()}
		g.seq++
		seq := g.seq
		g.mu.Unlock()
		g.wg.Go(func() { g.admit(c, seq) })
	}
}

// wait waits d, and reports whether the gate closed before.
func (g *gate) wait(d time.Duration) (closed bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.done:
		return true
	case <-t.C:
		return false
	}
}

// next returns the next admitted HELLO, or ctx's error.
func (g *gate) next(ctx context.Context) (arrival, error) {
	select {
	case a := <-g.tries:
		g.mu.Lock()
		g.handed = a.seq // the try begin starts next is this one's
		g.mu.Unlock()
		return a, nil
	case <-ctx.Done():
		return arrival{}, ctx.Err()
	}
}

// waitErr is the error of openReceive's wait for a source that ended
// with err: it names the last try dropped, if any, and the last source
// refused for another setup version, which a wait until the Open's
// context ends would otherwise only have logged.
func (g *gate) waitErr(err, dropped error) error {
	g.mu.Lock()
	refused := g.refused
	g.mu.Unlock()
	var why string
	if dropped != nil {
		why += fmt.Sprintf(" (a try of the source's was dropped during setup: %v)", dropped)
	}
	if refused != nil {
		why += fmt.Sprintf(" (%v)", refused)
	}
	return fmt.Errorf("waiting for the source on %s: %w%s", g.s.cfg.listen, err, why)
}

// close stops admitting and closes every connection not taken (those
// naming another tag than taken, when not zero, after OTHER); it
// returns once every goroutine of the gate did. ln stays open.
func (g *gate) close(taken transport.Tag) {
	g.mu.Lock()
	g.taken = taken
	close(g.done)
	for c := range g.pending {
		c.Close()
	}
	g.mu.Unlock()
	g.ln.SetDeadline(time.Unix(1, 0))
	g.wg.Wait()
	g.ln.SetDeadline(time.Time{})
}

// begin makes t the try in setup; end (deferred by its caller) ends it,
// closing an urgent channel it did not take.
func (g *gate) begin(t *try) (end func()) {
	t.urgent = make(chan arrival, 1)
	g.mu.Lock()
	g.cur, t.seq = t, g.handed
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		if g.cur == t {
			g.cur = nil
		}
		g.mu.Unlock()
		select {
		case u := <-t.urgent:
			u.c.Close()
		default:
		}
	}
}

// admit authenticates c, reads its first setup frame, answers it if it
// must (all within handshakeBound) and hands it on.
func (g *gate) admit(c *net.TCPConn, seq uint64) {
	t, sc, p, err := g.s.greet(c)
	g.mu.Lock()
	delete(g.pending, c)
	g.mu.Unlock()
	var a admitted
	var u *try
	switch {
	case err != nil && errors.Is(err, errSetupVersion):
		// An authenticated source of another version (an older
		// Ferry's): a frame of this version, whatever it says, makes its
		// own readSetup refuse it naming both versions, where a closed
		// connection would read as EOF.
		g.mu.Lock() // before the answer: its reader may end the Open next
		g.refused = fmt.Errorf("a source at %s was refused: %w", c.RemoteAddr(), err)
		g.mu.Unlock()
		writeSetup(sc, setupRefuse, []byte(err.Error()))
	case err != nil:
	case t == setupHello:
		a, err = g.s.admitHello(c, sc, p, g.want)
	default:
		if u, err = g.claimUrgent(p); err == nil {
			err = writeSetup(sc, setupUrgent, nil)
		}
	}
	c.SetDeadline(time.Time{})
	switch {
	case u != nil && err == nil:
		err = g.deliverUrgent(u, arrival{c: c, a: admitted{sc, u.tag}})
	case t == setupHello && (err == nil || errors.Is(err, ErrLayoutMismatch)):
		g.deliverHello(arrival{c, a, err, seq})
		return
	}
	if err != nil {
		g.s.log.Warn("refused a connection", "from", c.RemoteAddr().String(), "error", err)
		c.Close()
	}
}

// deliverHello supersedes the try in setup if h is its source's next
// (same tag, a connection accepted after that try's), then waits until
// openReceive takes h or the gate closes.
func (g *gate) deliverHello(h arrival) {
	g.mu.Lock()
	if cur := g.cur; h.err == nil && cur != nil && !cur.answered && cur.tag == h.a.tag && h.seq > cur.seq {
		cur.abandon(errSuperseded)
	}
	g.mu.Unlock()
	if g.waiting != nil {
		g.waiting()
	}
	select {
	case g.tries <- h:
		return
	case <-g.done:
	}
	if h.err == nil && !g.taken.IsZero() && h.a.tag != g.taken { // taken is set before done is closed
		h.c.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
		writeSetup(h.a.sc, setupOther, nil)
	}
	h.c.Close()
}

// claimUrgent checks an URGENT's payload p: the urgent channel of the
// try in setup, if it names that try's nonce and tag, is the first to,
// and that try's setup has not ended (superseded, its source gone, its
// bound passed) while setupReceive returns. From then on no HELLO
// supersedes that try: once the source reads the answer it may decide
// the try (READY). A try's end after this check, before READY arrives,
// is the mirror window (README, "READY").
func (g *gate) claimUrgent(p []byte) (*try, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.cur
	switch {
	case t == nil:
		return nil, fmt.Errorf("%w: urgent channel while no try of the source's is in setup", transport.ErrProtocol)
	case len(p) != nonceSize+tagSize || subtle.ConstantTimeCompare(p[:nonceSize], t.unonce) != 1:
		return nil, fmt.Errorf("%w: urgent channel with another session's nonce", transport.ErrProtocol)
	case transport.Tag(p[nonceSize:]) != t.tag:
		return nil, fmt.Errorf("%w: urgent channel naming another migration (tag %x)", transport.ErrProtocol, p[nonceSize:nonceSize+4])
	case t.answered:
		return nil, fmt.Errorf("%w: a second urgent channel for the try in setup", transport.ErrProtocol)
	case t.ctx.Err() != nil:
		// Answered, its source would say READY and its Open succeed
		// with a session this side drops.
		return nil, fmt.Errorf("urgent channel of a try that ended: %w", context.Cause(t.ctx))
	}
	t.answered = true
	return t, nil
}

// deliverUrgent hands u to its try, unless that try ended meanwhile.
func (g *gate) deliverUrgent(t *try, u arrival) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur != t {
		return errors.New("urgent channel answered as its try ended")
	}
	t.urgent <- u // capacity 1, claimed once
	return nil
}

// greet authenticates c with the job's credentials and reads its first
// setup frame, HELLO or URGENT, both within handshakeBound. It leaves
// c's deadline set, for the caller's answer; the caller clears it.
func (s *session) greet(c *net.TCPConn) (setupType, net.Conn, []byte, error) {
	c.SetNoDelay(true)
	bound := min(handshakeBound, s.cfg.connectTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	sc, err := transport.Secure(ctx, c, transport.RoleReceive, s.auth, s.plain)
	if err != nil {
		return 0, nil, nil, err
	}
	c.SetDeadline(time.Now().Add(bound))
	t, p, err := readSetupOf(sc, setupHello, setupUrgent)
	return t, sc, p, err
}

// admitHello checks a HELLO's payload p (c's deadline still set): a source that names another
// migration than want (unless zero) is refused before anything else of
// it is looked at (OTHER, nothing more); one of another layout is
// answered REFUSE, and its error (ErrLayoutMismatch) fails the Open.
func (s *session) admitHello(c *net.TCPConn, sc net.Conn, p []byte, want transport.Tag) (admitted, error) {
	tag, p, err := helloTag(p)
	if err != nil {
		return admitted{}, err
	}
	if !want.IsZero() && tag != want {
		writeSetup(sc, setupOther, nil)
		return admitted{}, fmt.Errorf("it names another migration (tag %x, this destination waits for %x)", tag[:4], want[:4])
	}
	l, rest, err := parseLayout(p)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d bytes after HELLO", transport.ErrProtocol, len(rest))
	}
	if err != nil {
		return admitted{}, err
	}
	if !sameLayout(l, s.ram.Layout) {
		err := layoutErr(s.ram.Layout, l, "destination", "source")
		writeSetup(sc, setupRefuse, []byte(err.Error()))
		return admitted{sc, tag}, fmt.Errorf("refused the source at %s: %w", c.RemoteAddr(), err)
	}
	return admitted{sc, tag}, nil
}
