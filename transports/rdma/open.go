package rdma

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/netdial"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// handshakeBound bounds a pending connection's TLS handshake and HELLO on
// the destination (connect_timeout, if shorter).
const handshakeBound = 3 * time.Second

// maxPending bounds connections being authenticated at once; one more
// closes one of them (transport.Evictable: a host holding more than
// floodShare loses its own oldest first, else the oldest goes). A flood
// from many hosts, of more than maxPending new connections within one
// handshake time, can still evict the real source's (its Open fails, the
// job can be run again): filtering that is the network's job.
const maxPending = 32

// floodShare is how many pending connections one host may hold before
// its own are evicted first: a source's control channel and urgent
// channel, and as many again from a try it gave up on.
const floodShare = 4

// What a destination logs as it waits for its source (the tests wait
// for these lines).
const (
	logListening = "waiting for the source"
	logDropped   = "dropped a try of the source's during setup; waiting for its next"
)

// openSend connects the source: control channel, authentication, HELLO,
// the fabric connection carrying the OFFER's nonce, the KEYS, the
// urgent channel, READY; all within connect_timeout, not counting the
// time it registers guest RAM (setupClock).
func openSend(parent context.Context, s *session) error {
	ctx, cancel := startClock(parent, s.cfg.connectTimeout)
	defer cancel()
	c, err := dialRetry(ctx, s.cfg.dialAddr(), s.cfg.connectTimeout)
	if err != nil {
		return err
	}
	sc, err := transport.Secure(ctx, c, transport.RoleSend, s.auth, s.plain)
	if err != nil {
		c.Close()
		return authErr(ctx, err)
	}
	s.ctrl, s.raw = sc, c
	if err := s.setupSend(ctx); err != nil {
		c.Close()
		s.closeSetup()
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return err
	}
	return nil
}

// setupSend runs the source's side of the setup frames (handshake.go)
// on the authenticated control channel, then opens the urgent channel
// and decides the try: it fails if ctx ended by then, else it says
// READY and succeeds, whatever ctx does afterwards.
func (s *session) setupSend(ctx *setupClock) error {
	ios := interruptOn(ctx, s.raw)
	defer ios.settle(false)
	if err := writeSetup(s.ctrl, setupHello, appendHello(s.tag, s.ram.Layout)); err != nil {
		return fmt.Errorf("send HELLO: %w", err)
	}
	p, err := readSetup(s.ctrl, setupOffer)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (the destination closed the control channel without answering HELLO: one of another "+
			"setup version than %d, an older Ferry's, does so; %v)", err, setupVersion, errSetupVersion)
	}
	if err != nil {
		return err
	}
	o, err := parseOffer(p)
	if err != nil {
		return err
	}
	if !sameLayout(o.layout, s.ram.Layout) {
		return layoutErr(s.ram.Layout, o.layout, "source", "destination")
	}
	host, _, _ := net.SplitHostPort(s.cfg.dialAddr())
	s.ep, err = fabric.Connect(ctx, s.cfg.provider, host, int(o.port), o.nonce[:])
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	s.caps = s.ep.Caps()
	resume := ctx.pause() // not counted: pinning a large guest (verbs) may take longer than the whole bound
	err = s.snd.register(s)
	resume()
	if err != nil {
		return err
	}
	s.uep, err = fabric.ConnectShared(ctx, s.ep, host, int(o.uport), o.unonce[:])
	if err != nil {
		return fmt.Errorf("fabric: urgent endpoint: %w", err)
	}
	s.ucaps = s.uep.Caps()
	if err := s.usnd.register(s); err != nil {
		return err
	}
	p, err = readSetup(s.ctrl, setupKeys)
	if err != nil {
		return err
	}
	if err := parseKeys(p, s.ram.regions); err != nil {
		return err
	}
	s.dec = wire.NewDecoder(s.ctrl)
	if err := s.dialUrgent(ctx, ios, o.unonce[:]); err != nil {
		return err
	}
	// The try is decided here: the destination waits for READY, and
	// takes a channel closed before it for a try that ended; after it,
	// ctx's end must no longer break the connections.
	if ios.settle(false) || ctx.Err() != nil {
		return errors.New("urgent channel accepted, but this try's time was up before READY") // openSend adds ctx's error
	}
	return s.sendReady()
}

// dialUrgent opens the urgent channel: a second control connection,
// authenticated like the first, that names the session by its nonce;
// ios interrupts it when the setup's time is up.
func (s *session) dialUrgent(ctx context.Context, ios *interrupter, unonce []byte) error {
	c, err := dialRetry(ctx, s.cfg.dialAddr(), s.cfg.connectTimeout)
	if err != nil {
		return fmt.Errorf("urgent channel: %w", err)
	}
	s.uraw = c
	ios.add(c)
	sc, err := transport.Secure(ctx, c, transport.RoleSend, s.auth, s.plain)
	if err != nil {
		return fmt.Errorf("urgent channel: %w", err)
	}
	if err := writeSetup(sc, setupUrgent, append(append([]byte(nil), unonce...), s.urgentTag[:]...)); err != nil {
		return fmt.Errorf("urgent channel: %w", err)
	}
	if _, err := readSetup(sc, setupUrgent); err != nil {
		return fmt.Errorf("urgent channel: %w", err)
	}
	if s.answeredHook != nil {
		s.answeredHook()
	}
	s.uctrl, s.udec = sc, wire.NewDecoder(sc)
	return nil
}

// sendReady says READY on the urgent channel, the source's last setup
// frame: this try's Open succeeded. It runs once the try is decided, so
// the Open's context no longer interrupts it; one small frame into a
// fresh connection does not wait for the peer, and handshakeBound (or
// connect_timeout) bounds it anyway.
func (s *session) sendReady() error {
	s.uraw.SetWriteDeadline(time.Now().Add(min(handshakeBound, s.cfg.connectTimeout)))
	defer s.uraw.SetWriteDeadline(time.Time{})
	if err := writeSetup(s.uctrl, setupReady, nil); err != nil {
		return fmt.Errorf("urgent channel: send READY: %w", err)
	}
	return nil
}

// dialRetry dials addr until ctx ends (netdial.Retry) and tunes the
// connection.
func dialRetry(ctx context.Context, addr string, timeout time.Duration) (*net.TCPConn, error) {
	c, err := netdial.Retry(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetNoDelay(true)
	return c, nil
}

// openReceive listens until an authenticated source with the same layout
// said HELLO, then sets up the fabric connection with it. A source that
// closes the control channel during that setup, after the OFFER (its
// Open ended half-way: its deadline, its process), is dropped at once
// and the wait goes on, within ctx, for its next try; one that stops
// without closing it (host down, or refused its urgent channel and not
// retrying) holds the setup until connect_timeout and is dropped then,
// the same way. A failure of this side's own (ownError) fails Open,
// whether or not the source closed meanwhile; so does ctx's end, naming
// the last try dropped.
func openReceive(ctx context.Context, s *session) error {
	ln, err := transport.Listen(ctx, s.cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.listen, err)
	}
	defer ln.Close()
	s.log.Info(logListening, "listen", ln.Addr().String())
	want := s.tag     // the OpenRequest's: zero takes any source's
	var dropped error // the last try dropped
	for {
		c, a, err := s.acceptOne(ctx, ln, s.admit, func(err error) bool { return errors.Is(err, ErrLayoutMismatch) })
		if err != nil && dropped != nil {
			return fmt.Errorf("waiting for the source on %s: %w (a try of the source's was dropped during setup: %v)",
				s.cfg.listen, err, dropped)
		}
		if err != nil {
			return fmt.Errorf("waiting for the source on %s: %w", s.cfg.listen, err)
		}
		s.ctrl, s.raw, s.tag = a.sc, c, a.tag
		err = s.setupReceive(ctx, ln)
		if err == nil {
			break
		}
		c.Close() // a stalled source's try fails at its next read
		s.closeSetup()
		if !errors.Is(err, errSourceGone) && !errors.Is(err, errSourceStalled) || ctx.Err() != nil {
			return err
		}
		// That try of the source's Open ended half-way, or will not
		// finish; its next try (the engine's reconnect, a retrying
		// caller) finds us listening.
		s.rcv.release()
		s.urcv.release()
		s.tag = want // a try of another source may be the next
		dropped = err
		s.log.Warn(logDropped, "from", c.RemoteAddr().String(), "error", err)
	}
	s.log.Info("source connected", "from", s.raw.RemoteAddr().String(), "provider", s.caps.Provider,
		"saw", s.caps.SAW, "delivery_complete", s.caps.DeliveryComplete)
	return nil
}

// admitted is what admit made of a connection: its secure channel and
// the tag it named (the urgent channel's: the session's).
type admitted struct {
	sc  net.Conn
	tag transport.Tag
}

// acceptOne accepts connections on ln, each authenticated by admit in
// its own goroutine within handshakeBound; the first that admit accepts
// (or fails with an error decisive says ends the wait) wins, and its
// admission is returned with it (what admit made of the others is
// dropped with them). A stranger learns nothing and cannot end the
// wait. ln stays open (the urgent channel is accepted on it too); its
// accept loop is stopped by a deadline, which is cleared again on
// return. Once ctx ended, every connection it accepted is closed, one
// admitted meanwhile too.
func (s *session) acceptOne(ctx context.Context, ln *net.TCPListener, admit func(*net.TCPConn) (admitted, error),
	decisive func(error) bool) (*net.TCPConn, admitted, error) {
	type result struct {
		c   *net.TCPConn
		a   admitted
		err error
	}
	ln.SetDeadline(time.Time{})
	won := make(chan result, 1)
	var mu sync.Mutex
	pending := map[*net.TCPConn]transport.Pending{}
	settled := false
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := nc.(*net.TCPConn)
			mu.Lock()
			if settled {
				mu.Unlock()
				c.Close()
				continue
			}
			host := transport.HostOf(c.RemoteAddr())
			if len(pending) >= maxPending {
				if victim, ok := transport.Evictable(pending, host, floodShare); ok {
					victim.Close() // its handshake fails; newer callers get a chance
					delete(pending, victim)
				}
			}
			pending[c] = transport.Pending{Host: host, Since: time.Now()}
			mu.Unlock()
			wg.Go(func() {
				a, err := admit(c)
				mu.Lock()
				defer mu.Unlock()
				delete(pending, c)
				if settled || (err != nil && (decisive == nil || !decisive(err))) {
					if err != nil {
						s.log.Warn("refused a connection", "from", c.RemoteAddr().String(), "error", err)
					}
					c.Close()
					return
				}
				settled = true
				won <- result{c, a, err}
			})
		}
	})
	var r result
	select {
	case r = <-won:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	ln.SetDeadline(time.Unix(1, 0))
	mu.Lock()
	settled = true
	for c := range pending {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	ln.SetDeadline(time.Time{})
	if r.err != nil {
		if r.c != nil {
			r.c.Close()
		}
		select {
		case late := <-won: // admitted as ctx ended: its peer must not wait on it
			late.c.Close()
		default:
		}
		return nil, admitted{}, r.err
	}
	return r.c, r.a, nil
}

// closeSetup releases the fabric endpoints and the urgent channel of a
// session whose Open failed.
func (s *session) closeSetup() {
	if s.uraw != nil {
		s.uraw.Close()
		s.uraw, s.uctrl = nil, nil
	}
	if s.ep != nil {
		s.ep.Close()
		s.ep = nil
	}
	if s.uep != nil {
		s.uep.Close()
		s.uep = nil
	}
}

// admit authenticates c and reads its HELLO within handshakeBound, and
// returns it with the tag it names. A source that names another
// migration than the one awaited is refused before anything else of its
// HELLO is looked at (OTHER, nothing more); the caller closes it and
// waits on. With the zero tag a source of any tag is admitted. It runs
// concurrently for every pending connection: it only reads s.tag.
func (s *session) admit(c *net.TCPConn) (admitted, error) {
	defer c.SetDeadline(time.Time{})
	sc, p, err := s.greet(c, setupHello)
	if err != nil {
		if errors.Is(err, errSetupVersion) {
			// An authenticated source of another version (an older
			// Ferry's): a frame of this version, whatever it says, makes
			// its own readSetup refuse it naming both versions, where a
			// closed connection would read as EOF.
			writeSetup(sc, setupRefuse, []byte(err.Error()))
		}
		return admitted{}, err
	}
	tag, p, err := helloTag(p)
	if err != nil {
		return admitted{}, err
	}
	if !s.tag.IsZero() && tag != s.tag {
		writeSetup(sc, setupOther, nil)
		return admitted{}, fmt.Errorf("it names another migration (tag %x, this destination waits for %x)", tag[:4], s.tag[:4])
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

// greet authenticates c with the job's credentials and reads its first
// setup message, of type want, both within handshakeBound. It leaves c's
// deadline set, for the caller's answer; the caller clears it.
func (s *session) greet(c *net.TCPConn, want setupType) (net.Conn, []byte, error) {
	c.SetNoDelay(true)
	ctx, cancel := context.WithTimeout(context.Background(), min(handshakeBound, s.cfg.connectTimeout))
	defer cancel()
	sc, err := transport.Secure(ctx, c, transport.RoleReceive, s.auth, s.plain)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(min(handshakeBound, s.cfg.connectTimeout)))
	p, err := readSetup(sc, want)
	return sc, p, err
}

// setupReceive opens the fabric listeners (bulk and urgent, one fabric
// and domain), OFFERs them with fresh nonces, accepts the one connection
// carrying each nonce and closes both listeners, registers guest RAM for
// remote writes once, in the domain both endpoints share, and sends the
// KEYS; then it accepts the urgent channel on ln and waits for the
// source's READY there (its Open succeeded). All within
// connect_timeout, the bound of the source's own Open, not counting the
// time it registers guest RAM (setupClock). From the OFFER on,
// unless it failed on its own first (ownError), it stops with an error
// wrapping errSourceGone if the source closes the control channel (at
// once), or errSourceStalled once that bound passed with the source's
// try unfinished (a source that stopped without closing: its host
// stalled, or its urgent channel was refused or late and it does not
// retry); openReceive then waits for a next try.
func (s *session) setupReceive(parent context.Context, ln *net.TCPListener) (err error) {
	bound, stop := startClock(parent, s.cfg.connectTimeout)
	defer stop()
	ctx, abandon := context.WithCancelCause(bound)
	defer abandon(nil)
	raw := s.raw // openReceive sets s.raw again for a next try while this may still run
	ios := interruptOn(ctx, raw)
	defer func() { ios.settle(err == nil) }() // a try that said READY keeps its connections, whenever ctx ends
	host, _, _ := net.SplitHostPort(s.cfg.listen)
	l, err := fabric.Listen(s.cfg.provider, host)
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	defer l.Close()
	ul, err := fabric.ListenShared(l, host) // one domain: guest RAM registered once
	if err != nil {
		return fmt.Errorf("fabric: urgent endpoint: %w", err)
	}
	defer ul.Close()
	port, err := l.Port()
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	uport, err := ul.Port()
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	o := offer{port: uint16(port), uport: uint16(uport), layout: s.ram.Layout}
	if _, err := rand.Read(o.nonce[:]); err != nil {
		return err
	}
	if _, err := rand.Read(o.unonce[:]); err != nil {
		return err
	}
	// From the OFFER on the setup waits for the source (watch.go).
	watch := watchPeer(raw, func() { abandon(errSourceGone) })
	defer func() {
		gone := watch.stop()
		switch {
		case err == nil || errors.As(err, new(ownError)):
		case gone:
			err = fmt.Errorf("%w: %w", errSourceGone, err)
		case bound.Err() != nil && parent.Err() == nil:
			err = fmt.Errorf("%w (%v): %w", errSourceStalled, s.cfg.connectTimeout, err)
		}
	}()
	if err := writeSetup(s.ctrl, setupOffer, o.append(nil)); err != nil {
		return fmt.Errorf("send OFFER: %w", err)
	}
	nonceIs := func(n []byte) func([]byte) bool {
		return func(p []byte) bool { return len(p) >= nonceSize && subtle.ConstantTimeCompare(p[:nonceSize], n) == 1 }
	}
	s.ep, err = l.Accept(ctx, nonceIs(o.nonce[:]), func(e *fabric.Endpoint) error {
		s.caps = e.Caps()
		// Not counted: a registration that outlasts connect_timeout
		// (pinning a large guest, verbs) must not make this side drop
		// the try; the source's clock, which it cannot pause, counts it.
		defer bound.pause()()
		return own(s.rcv.register(s, e))
	})
	if err != nil {
		return fmt.Errorf("fabric: waiting for the source's connection on port %d: %w", port, err)
	}
	s.uep, err = ul.Accept(ctx, nonceIs(o.unonce[:]), func(e *fabric.Endpoint) error {
		s.ucaps = e.Caps()
		return own(s.urcv.register(s, e))
	})
	if err != nil {
		return fmt.Errorf("fabric: waiting for the source's urgent connection on port %d: %w", uport, err)
	}
	// Both expected connections are in: stop listening, or strangers'
	// requests pile up unread on the endpoints' event queues until Close.
	if n := fabric.StopListening(s.ep, s.uep); n > 0 {
		s.log.Warn("refused fabric connection requests that came after the source's", "count", n)
	}
	if err := writeSetup(s.ctrl, setupKeys, appendKeys(nil, s.ram.regions, s.caps.VirtAddr, s.ucaps.VirtAddr)); err != nil {
		return fmt.Errorf("send KEYS: %w", err)
	}
	s.dec = wire.NewDecoder(s.ctrl)
	c, a, err := s.acceptOne(ctx, ln, func(c *net.TCPConn) (admitted, error) { return s.admitUrgent(c, o.unonce[:]) }, nil)
	if err != nil {
		return fmt.Errorf("waiting for the source's urgent channel: %w", err)
	}
	s.uraw, s.uctrl = c, a.sc
	ios.add(c)
	// READY: the source's Open succeeded. Until it comes, that try may
	// still end (its deadline passing as our answer arrived), and a
	// session returned now would fail at once.
	p, err := readSetup(a.sc, setupReady)
	if err == nil && len(p) != 0 {
		err = fmt.Errorf("%w: READY of %d bytes", transport.ErrProtocol, len(p))
	}
	if err != nil {
		if peerClosed(err) {
			return fmt.Errorf("%w: urgent channel: %w", errSourceGone, err)
		}
		return fmt.Errorf("urgent channel: waiting for READY: %w", err)
	}
	s.udec = wire.NewDecoder(a.sc)
	return nil
}

// admitUrgent authenticates c as the session's urgent channel: the
// job's credentials, then URGENT with the nonce given in the OFFER and
// the session's tag.
func (s *session) admitUrgent(c *net.TCPConn, unonce []byte) (admitted, error) {
	defer c.SetDeadline(time.Time{})
	sc, p, err := s.greet(c, setupUrgent)
	if err != nil {
		return admitted{}, err
	}
	if len(p) != nonceSize+tagSize || subtle.ConstantTimeCompare(p[:nonceSize], unonce) != 1 {
		return admitted{}, fmt.Errorf("%w: urgent channel with another session's nonce", transport.ErrProtocol)
	}
	if transport.Tag(p[nonceSize:]) != s.tag {
		return admitted{}, fmt.Errorf("%w: urgent channel naming another migration (tag %x)", transport.ErrProtocol, p[nonceSize:nonceSize+4])
	}
	if err := writeSetup(sc, setupUrgent, nil); err != nil {
		return admitted{}, err
	}
	return admitted{sc, s.tag}, nil
}

// randomKey is a registration key nobody outside the session can guess,
// used where the provider lets the caller choose keys.
func randomKey() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}
