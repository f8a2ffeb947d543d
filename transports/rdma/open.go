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
// time it registers guest RAM (setupClock), nor libfabric's first use
// in the process, which it waits for before its clock starts
// (awaitLibfabric). A try whose time ran out says once which step it
// was in and which bound ended it (setupClock.timedOut).
func openSend(parent context.Context, s *session) error {
	if err := s.awaitLibfabric(parent); err != nil {
		return err
	}
	ctx, cancel := startClock(parent, s.cfg.connectTimeout)
	defer cancel()
	addr := s.cfg.dialAddr()
	c, err := dialRetry(ctx, addr, s.cfg.connectTimeout)
	if err != nil {
		return ctx.timedOut(during(fmt.Sprintf("connecting to %s (is the destination listening there?)", addr), err))
	}
	under := net.Conn(c)
	if s.wrapRaw != nil {
		under = s.wrapRaw(c)
	}
	sc, err := transport.Secure(ctx, under, transport.RoleSend, s.auth, s.plain)
	if err != nil {
		c.Close()
		if err := ctx.timedOut(during("authenticating with the destination", err)); ctx.Err() != nil && errors.As(err, new(*endedError)) {
			return err
		}
		return authErr(ctx, err)
	}
	s.ctrl, s.raw = sc, c
	if err := s.setupSend(ctx); err != nil {
		c.Close()
		s.closeSetup()
		return ctx.timedOut(err)
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
		return during("sending HELLO", fmt.Errorf("send HELLO: %w", err))
	}
	p, err := readSetup(s.ctrl, setupOffer)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (the destination closed the control channel without answering HELLO: its Open ended, "+
			"or took another try of this migration's source; or it is of setup version 2 or older, an older Ferry's, "+
			"which does so at a HELLO of another version: %v)", err, errSetupVersion)
	}
	if err != nil {
		return during("waiting for the destination's OFFER (its answer to HELLO)", err)
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
		return during(fmt.Sprintf("connecting the fabric endpoint to %s port %d (provider %s)", host, o.port, s.cfg.provider),
			fmt.Errorf("fabric: %w", err))
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
		return during(fmt.Sprintf("connecting the urgent fabric endpoint to %s port %d (provider %s)", host, o.uport, s.cfg.provider),
			fmt.Errorf("fabric: urgent endpoint: %w", err))
	}
	s.ucaps = s.uep.Caps()
	if err := s.usnd.register(s); err != nil {
		return err
	}
	p, err = readSetup(s.ctrl, setupKeys)
	if err != nil {
		return during("waiting for the destination's KEYS", err)
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
		return during("finishing the try (urgent channel accepted, READY not sent)", ctx.Err())
	}
	return s.sendReady()
}

// dialUrgent opens the urgent channel: a second control connection,
// authenticated like the first, that names the session by its nonce;
// ios interrupts it when the setup's time is up.
func (s *session) dialUrgent(ctx context.Context, ios *interrupter, unonce []byte) error {
	c, err := dialRetry(ctx, s.cfg.dialAddr(), s.cfg.connectTimeout)
	if err != nil {
		return during(fmt.Sprintf("connecting the urgent channel to %s", s.cfg.dialAddr()), fmt.Errorf("urgent channel: %w", err))
	}
	s.uraw = c
	ios.add(c)
	sc, err := transport.Secure(ctx, c, transport.RoleSend, s.auth, s.plain)
	if err != nil {
		return during("authenticating the urgent channel", fmt.Errorf("urgent channel: %w", err))
	}
	if err := writeSetup(sc, setupUrgent, append(append([]byte(nil), unonce...), s.urgentTag[:]...)); err != nil {
		return during("sending URGENT", fmt.Errorf("urgent channel: %w", err))
	}
	if _, err := readSetup(sc, setupUrgent); err != nil {
		return during("waiting for the destination's answer to URGENT", fmt.Errorf("urgent channel: %w", err))
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
// said HELLO, then sets up the fabric connection with it. It takes
// connections only once libfabric's first use in the process is done
// (awaitLibfabric), so no try's clock counts it. A source that
// closes the control channel during that setup, after the OFFER (its
// Open ended half-way: its deadline, its process), is dropped at once
// and the wait goes on, within ctx, for its next try; so is one whose
// next try says HELLO meanwhile (the gate, gate.go), which is taken at
// once; one that stops without closing it (host down, or refused its
// urgent channel and not retrying) and sends no next try holds the
// setup until connect_timeout and is dropped then, the same way. A
// failure of this side's own (ownError) fails Open, whether or not the
// source closed meanwhile; so does ctx's end, naming the last try
// dropped.
func openReceive(ctx context.Context, s *session) (err error) {
	ln, err := transport.Listen(ctx, s.cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.listen, err)
	}
	defer ln.Close()
	if err := s.awaitLibfabric(ctx); err != nil {
		return err
	}
	g := s.openGate(ln)
	defer func() {
		var taken transport.Tag
		if err == nil {
			taken = s.tag
		}
		g.close(taken)
	}()
	s.log.Info(logListening, "listen", ln.Addr().String())
	want := s.tag     // the OpenRequest's: zero takes any source's
	var dropped error // the last try dropped
	for {
		h, err := g.next(ctx)
		if err == nil && h.err != nil {
			h.c.Close()
			err = h.err
		}
		if err != nil {
			return g.waitErr(err, dropped)
		}
		s.ctrl, s.raw, s.tag = h.a.sc, h.c, h.a.tag
		err = s.setupReceive(ctx, g)
		if err == nil {
			break
		}
		h.c.Close() // a stalled source's try fails at its next read
		s.closeSetup()
		if !droppable(err) || ctx.Err() != nil {
			return err
		}
		// That try of the source's Open ended half-way, or will not
		// finish, or its next try came; that next try (the engine's
		// reconnect, a retrying caller) finds us listening.
		s.rcv.release()
		s.urcv.release()
		s.tag = want // a try of another source may be the next
		dropped = err
		s.log.Warn(logDropped, "from", h.c.RemoteAddr().String(), "error", err)
	}
	s.log.Info("source connected", "from", s.raw.RemoteAddr().String(), "provider", s.caps.Provider,
		"saw", s.caps.SAW, "delivery_complete", s.caps.DeliveryComplete)
	return nil
}

// stalled is the error of a setup whose try the source did not finish
// within connect_timeout (bound's end) without closing the control
// channel: it says once which step timed out and which bound it was.
func stalled(bound *setupClock, err error) error {
	if step := cutStep(err); step != "" {
		return &endedError{fmt.Sprintf("%s while %s: %v", bound.why(), step, errSourceStalled), errSourceStalled}
	}
	return fmt.Errorf("%w (%s): %w", errSourceStalled, bound.why(), err)
}

// droppable reports whether a destination's setup failed for a try of
// the source's that is over, not for this side: openReceive then waits
// for the next try.
func droppable(err error) bool {
	return errors.Is(err, errSourceGone) || errors.Is(err, errSourceStalled) || errors.Is(err, errSuperseded)
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

// setupReceive opens the fabric listeners (bulk and urgent, one fabric
// and domain), OFFERs them with fresh nonces, accepts the one connection
// carrying each nonce and closes both listeners, registers guest RAM for
// remote writes once, in the domain both endpoints share, and sends the
// KEYS; then it takes the urgent channel from the gate g and waits for
// the source's READY there (its Open succeeded). All within
// connect_timeout, the bound of the source's own Open, not counting the
// time it registers guest RAM (setupClock). Unless it failed on its
// own first (ownError), it stops with an error wrapping errSuperseded
// as soon as the source's next try says HELLO (before the urgent
// channel is accepted), and from the OFFER on with one wrapping
// errSourceGone if the source closes the control channel (at once), or
// errSourceStalled once that bound passed with the source's try
// unfinished (a source that stopped without closing: its host
// stalled, or its urgent channel was refused or late and it does not
// retry); openReceive then takes the next try.
func (s *session) setupReceive(parent context.Context, g *gate) (err error) {
	bound, stop := startClock(parent, s.cfg.connectTimeout)
	defer stop()
	ctx, abandon := context.WithCancelCause(bound)
	defer abandon(nil)
	var o offer
	if _, err := rand.Read(o.nonce[:]); err != nil {
		return err
	}
	if _, err := rand.Read(o.unonce[:]); err != nil {
		return err
	}
	t := &try{tag: s.tag, unonce: o.unonce[:], ctx: ctx, abandon: abandon}
	defer g.begin(t)()
	raw := s.raw // this try's control connection
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
	o.port, o.uport, o.layout = uint16(port), uint16(uport), s.ram.Layout
	// From the OFFER on the setup waits for the source (watch.go).
	watch := watchPeer(raw, func() { abandon(errSourceGone) })
	defer func() {
		gone := watch.stop()
		switch {
		case err == nil || errors.As(err, new(ownError)):
		case gone:
			err = fmt.Errorf("%w: %w", errSourceGone, err)
		case errors.Is(context.Cause(ctx), errSuperseded):
			err = fmt.Errorf("%w: %w", errSuperseded, err)
		case bound.Err() != nil && parent.Err() == nil:
			err = stalled(bound, err)
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
		return during(fmt.Sprintf("waiting for the source's fabric connection on port %d", port),
			fmt.Errorf("fabric: waiting for the source's connection on port %d: %w", port, err))
	}
	s.uep, err = ul.Accept(ctx, nonceIs(o.unonce[:]), func(e *fabric.Endpoint) error {
		s.ucaps = e.Caps()
		return own(s.urcv.register(s, e))
	})
	if err != nil {
		return during(fmt.Sprintf("waiting for the source's urgent fabric connection on port %d", uport),
			fmt.Errorf("fabric: waiting for the source's urgent connection on port %d: %w", uport, err))
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
	var u arrival
	select {
	case u = <-t.urgent:
	case <-ctx.Done():
		return during("waiting for the source's urgent channel", fmt.Errorf("waiting for the source's urgent channel: %w", ctx.Err()))
	}
	s.uraw, s.uctrl = u.c, u.a.sc
	ios.add(u.c)
	// READY: the source's Open succeeded. Until it comes, that try may
	// still end (its deadline passing as our answer arrived), and a
	// session returned now would fail at once.
	p, err := readSetup(u.a.sc, setupReady)
	if err == nil && len(p) != 0 {
		err = fmt.Errorf("%w: READY of %d bytes", transport.ErrProtocol, len(p))
	}
	if err != nil {
		if peerClosed(err) {
			return fmt.Errorf("%w: urgent channel: %w", errSourceGone, err)
		}
		return during("waiting for the source's READY", fmt.Errorf("urgent channel: waiting for READY: %w", err))
	}
	s.udec = wire.NewDecoder(u.a.sc)
	return nil
}

// randomKey is a registration key nobody outside the session can guess,
// used where the provider lets the caller choose keys.
func randomKey() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}
