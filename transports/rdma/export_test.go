package rdma

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// SetCommitEarly makes the sender commit each batch before its writes, a
// broken transport the visibility test must catch.
func (t *Transport) SetCommitEarly() { t.commitEarly = true }

// SetUrgentCommitEarly makes the sender post each urgent COMMIT before
// its writes, a broken transport the urgent visibility test must catch.
func (t *Transport) SetUrgentCommitEarly() { t.ucommitEarly = true }

// SetUrgentTag makes the sender name tag on its urgent channel instead
// of its session's, a stream spliced in from another migration that the
// destination must refuse.
func (t *Transport) SetUrgentTag(tag transport.Tag) { t.urgentTag = &tag }

// SetRegisterHook makes the transport call hook each time it is about
// to register guest RAM, failing that setup with its error: a receiver
// for a source's fabric connection (inside the fabric accept, after the
// OFFER), a sender after its fabric connect.
func (t *Transport) SetRegisterHook(hook func() error) { t.registerHook = hook }

// SetWarmHook makes the transport's Open wait for warm(provider)'s
// channel, instead of fabric.Warm's, before its setup's clock starts.
func (t *Transport) SetWarmHook(warm func(provider string) <-chan struct{}) { t.warm = warm }

// SetControlWrap makes the transport write an open session's control
// frames through wrap(conn) (reads and the setup frames go to conn).
func (t *Transport) SetControlWrap(wrap func(net.Conn) net.Conn) { t.wrapCtrl = wrap }

// SetRawControlWrap makes a sending session's control socket be wrapped
// by wrap before TLS (in plaintext: the channel's writes themselves).
func (t *Transport) SetRawControlWrap(wrap func(net.Conn) net.Conn) { t.wrapRaw = wrap }

// SetPollPace makes a sending session call pace before each poll of its
// endpoints' completions (by their pollers or a driving engine call):
// while pace blocks, no completion of its writes is taken.
func (t *Transport) SetPollPace(pace func()) { t.pacePolls = pace }

// SetDriveWaitHook makes a sending session call hook each time an
// engine call that drives the bulk endpoint (SendPages, Flush) is about
// to poll it while it waits: while hook blocks, nothing polls that
// endpoint (the call holds it; the session's poller stands back).
func (t *Transport) SetDriveWaitHook(hook func()) { t.driveWait = hook }

// ProgressKind is the kind of the source's PROGRESS frames.
const ProgressKind = progressKind

// SetCommitPages makes the sender's COMMITs name pages(n) data pages
// where the batch wrote n, as a buggy or hostile source would.
func (t *Transport) SetCommitPages(pages func(n uint64) uint64) { t.commitPages = pages }

// SetUrgentCommitRuns makes the sender's urgent COMMITs list
// runs(list) where it would list list, as a buggy or hostile source
// would (at most MaxURuns runs).
func (t *Transport) SetUrgentCommitRuns(runs func(list []transport.PageRun) []transport.PageRun) {
	t.ucommitRuns = runs
}

// MaxURuns is the most runs one urgent COMMIT lists.
const MaxURuns = maxURuns

// WriteControl writes frame as it is on the open session's control
// channel, among the session's own frames.
func (t *Transport) WriteControl(ctx context.Context, frame []byte) error {
	return t.openSession().writeFrame(ctx, frame)
}

// ProgressFrame is the PROGRESS frame of batch seq saying pages.
func ProgressFrame(seq, pages uint64) []byte { return appendProgress(nil, seq, pages) }

// RunsFrame is a RUNS frame of batch seq naming runs.
func RunsFrame(seq uint64, runs ...transport.PageRun) []byte {
	var p []byte
	for _, r := range runs {
		p = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(p, r.First), uint32(r.Count))
	}
	return append(appendRunsHeader(nil, seq, len(p)), p...)
}

// MarkedKind is the kind of the destination's MARKED frames; MaxMarks
// is how many MARKs the source keeps unanswered.
const (
	MarkedKind = markedKind
	MaxMarks   = maxMarks
)

// SetMarkWaitHook makes a sending session call hook each time a MARK
// must wait for room (maxMarks unanswered, or its buffer's send not yet
// completed) before it is posted.
func (t *Transport) SetMarkWaitHook(hook func()) { t.markWait = hook }

// SetPostHook makes a sending session call hook(true) just before it
// posts each MARK, hook(false) each COMMIT, before the MARK or COMMIT
// waits for room in the bulk queue.
func (t *Transport) SetPostHook(hook func(mark bool)) { t.postHook = hook }

// HoldBulkRoom takes all the room in the open sender's bulk queue, as
// that many writes not yet completed would: a post waits (under its
// context) until release gives it back.
func (t *Transport) HoldBulkRoom() (release func()) {
	q := &t.openSession().snd.queue
	q.inflight.Add(q.maxIn)
	return sync.OnceFunc(func() {
		q.inflight.Add(-q.maxIn)
		wake(q.progress)
	})
}

// UrgentCompletionMode says how the open session commits urgent pages.
func (t *Transport) UrgentCompletionMode() string {
	if t.openSession().ucaps.DeliveryComplete {
		return "delivery-complete"
	}
	if t.openSession().ucaps.SAW {
		return "send-after-write"
	}
	return "none"
}

// Corrupt changes the destination's key (or base) the open sender writes
// with, as a buggy or hostile source would.
func (t *Transport) Corrupt(key, base uint64) {
	for _, r := range t.openSession().ram.regions {
		r.rkey ^= key
		r.rbase += base
		r.urkey ^= key
		r.urbase += base
	}
}

// CompletionMode says how the open session commits batches.
func (t *Transport) CompletionMode() string {
	if t.openSession().caps.DeliveryComplete {
		return "delivery-complete"
	}
	if t.openSession().caps.SAW {
		return "send-after-write"
	}
	return "none"
}

// RegisteredOnce reports whether the open sender addresses the
// destination's guest RAM with one registration from both endpoints (the
// same base and key in both sets of the KEYS: the destination registered
// it once, in the domain its endpoints share).
func (t *Transport) RegisteredOnce() bool {
	for _, r := range t.openSession().ram.regions {
		if r.rkey != r.urkey || r.rbase != r.urbase {
			return false
		}
	}
	return true
}

// HoldUrgentAcks makes the open receiver hold back its urgent ACKs until
// release is called.
func (t *Transport) HoldUrgentAcks() (release func()) {
	ch := make(chan struct{})
	t.openSession().urcv.hold.Store(&ch)
	return sync.OnceFunc(func() { close(ch) })
}

// FailUrgentRepost makes the open receiver fail each re-post of an
// urgent receive buffer (after taking its COMMIT) with err, a fault of
// the destination's own.
func (t *Transport) FailUrgentRepost(err error) { t.openSession().urcv.repost.Store(&err) }

// What a destination logs once its control port listens, and when it
// drops a try of the source's and waits for the next.
const (
	LogListening = logListening
	LogDropped   = logDropped
	LogWarmed    = logWarmed
	LogWarmCut   = logWarmCut
)

// UrgentHeld is how many urgent items the open sender holds until a
// bulk batch's ACK (order.held).
func (t *Transport) UrgentHeld() int {
	t.openSession().ord.mu.Lock()
	defer t.openSession().ord.mu.Unlock()
	return t.openSession().ord.held
}

// Uslots is how many urgent COMMITs may be unacknowledged.
const Uslots = uslots

// Abandon says where AbandonedSource stops and what it does there.
type Abandon int

const (
	// CloseBeforeUrgent: after the KEYS, before the urgent channel, it
	// closes everything (a try whose Open ended there).
	CloseBeforeUrgent Abandon = iota
	// HoldBeforeUrgent: after the KEYS it keeps every connection open
	// and says nothing until ctx ends (a source host that stalled).
	HoldBeforeUrgent
	// HoldUrgentRefused: its urgent channel names another migration;
	// once that is refused it keeps the control channel open and says
	// nothing until ctx ends (it does not retry).
	HoldUrgentRefused
	// CloseAfterUrgent: once the destination accepted its urgent
	// channel (its URGENT answer read) it closes everything, without
	// READY.
	CloseAfterUrgent
)

// AbandonedSource plays a source whose Open ends half-way, after the
// fabric connections: it authenticates on addr with creds, says HELLO
// for tag and layout, connects both endpoints with the OFFER's nonces,
// reads the KEYS, calls at (unless nil), then does what how says. Its
// error is nil if it got there.
func AbandonedSource(ctx context.Context, provider, addr string, creds transport.Credentials, tag transport.Tag,
	layout []transport.RAMRegion, how Abandon, at func()) error {
	auth, err := creds.TLSConfig(transport.RoleSend)
	if err != nil {
		return err
	}
	c, err := dialRetry(ctx, addr, time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sc, err := transport.Secure(ctx, c, transport.RoleSend, auth, creds.Plaintext)
	if err != nil {
		return err
	}
	l := make([]wire.Region, len(layout))
	for i, r := range layout {
		l[i] = wire.Region{GPA: r.GPA, Size: r.Size}
	}
	if err := writeSetup(sc, setupHello, appendHello(tag, l)); err != nil {
		return err
	}
	p, err := readSetup(sc, setupOffer)
	if err != nil {
		return err
	}
	o, err := parseOffer(p)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	ep, err := fabric.Connect(ctx, provider, host, int(o.port), o.nonce[:])
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	defer ep.Close()
	uep, err := fabric.ConnectShared(ctx, ep, host, int(o.uport), o.unonce[:])
	if err != nil {
		return fmt.Errorf("fabric: urgent endpoint: %w", err)
	}
	defer uep.Close()
	if _, err = readSetup(sc, setupKeys); err != nil {
		return err
	}
	if at != nil {
		at()
	}
	switch how {
	case HoldBeforeUrgent:
		<-ctx.Done()
	case HoldUrgentRefused:
		s := &session{cfg: config{listen: addr, connectTimeout: time.Minute}, auth: auth, plain: creds.Plaintext, urgentTag: transport.Tag{^tag[0]}}
		if err := s.dialUrgent(ctx, interruptOn(ctx), o.unonce[:]); err == nil {
			return errors.New("the destination accepted an urgent channel naming another migration")
		} else if ctx.Err() != nil {
			return err
		}
		if s.uraw != nil {
			s.uraw.Close()
		}
		<-ctx.Done()
	case CloseAfterUrgent:
		s := &session{cfg: config{listen: addr, connectTimeout: time.Minute}, auth: auth, plain: creds.Plaintext, urgentTag: tag}
		err := s.dialUrgent(ctx, interruptOn(ctx), o.unonce[:]) // and no READY
		if s.uraw != nil {
			s.uraw.Close()
		}
		return err
	}
	return nil
}

// SetUrgentAnsweredHook makes the sender call hook as soon as it read
// the destination's URGENT answer (the test ends the Open's context
// there: the instant its deadline might pass); nil: none.
func (t *Transport) SetUrgentAnsweredHook(hook func()) { t.answeredHook = hook }

// HeldTry is a source's try that stopped after the KEYS and holds on to
// everything (a stalled host's, or a second Open of the same source):
// its control channel, both fabric endpoints and the destination's keys.
type HeldTry struct {
	ctrl   net.Conn
	ep     *fabric.Endpoint
	uep    *fabric.Endpoint
	buf    []byte
	mr     *fabric.MR
	rbase  uint64 // region 0 as the bulk endpoint addresses it
	rkey   uint64
	closed bool
}

// HoldTry runs a source's try on addr up to the KEYS, like
// AbandonedSource with HoldBeforeUrgent, and returns it held.
func HoldTry(ctx context.Context, provider, addr string, creds transport.Credentials, tag transport.Tag,
	layout []transport.RAMRegion) (*HeldTry, error) {
	auth, err := creds.TLSConfig(transport.RoleSend)
	if err != nil {
		return nil, err
	}
	c, err := dialRetry(ctx, addr, time.Minute)
	if err != nil {
		return nil, err
	}
	h := &HeldTry{ctrl: c}
	sc, err := transport.Secure(ctx, c, transport.RoleSend, auth, creds.Plaintext)
	if err != nil {
		h.Close()
		return nil, err
	}
	l := make([]wire.Region, len(layout))
	for i, r := range layout {
		l[i] = wire.Region{GPA: r.GPA, Size: r.Size}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if err := writeSetup(sc, setupHello, appendHello(tag, l)); err != nil {
		h.Close()
		return nil, err
	}
	p, err := readSetup(sc, setupOffer)
	if err == nil {
		var o offer
		if o, err = parseOffer(p); err == nil {
			err = h.connect(ctx, provider, addr, sc, o)
		}
	}
	if err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func (h *HeldTry) connect(ctx context.Context, provider, addr string, sc net.Conn, o offer) error {
	host, _, _ := net.SplitHostPort(addr)
	var err error
	if h.ep, err = fabric.Connect(ctx, provider, host, int(o.port), o.nonce[:]); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	if h.uep, err = fabric.ConnectShared(ctx, h.ep, host, int(o.uport), o.unonce[:]); err != nil {
		return fmt.Errorf("fabric: urgent endpoint: %w", err)
	}
	p, err := readSetup(sc, setupKeys)
	if err != nil {
		return err
	}
	if len(p) < 4+16 {
		return fmt.Errorf("KEYS of %d bytes", len(p))
	}
	h.rbase, h.rkey = binary.BigEndian.Uint64(p[4:]), binary.BigEndian.Uint64(p[12:])
	if h.buf, err = unix.Mmap(-1, 0, 1<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		return err
	}
	h.mr, err = h.ep.Register(h.buf, fabric.AccessWrite, randomKey())
	return err
}

// Write writes 64 KiB of fill at the start of the destination's first
// region with the keys of the held try, and waits (at most 5 s) for the
// write's completion: nil once it completed without error.
func (h *HeldTry) Write(fill byte) error {
	for i := range h.buf {
		h.buf[i] = fill
	}
	if err := h.ep.Write(h.buf, h.mr, h.rbase, h.rkey, 1); err != nil {
		return err
	}
	var cs [4]fabric.Completion
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		n, err := h.ep.Poll(cs[:], 20*time.Millisecond)
		if err != nil || n > 0 {
			return err
		}
	}
	return errors.New("no completion of the write within 5 s")
}

// Close closes everything the try holds.
func (h *HeldTry) Close() {
	if h.closed {
		return
	}
	h.closed = true
	h.ctrl.Close()
	if h.uep != nil {
		h.uep.Close()
	}
	if h.ep != nil {
		h.ep.Close()
	}
	if h.buf != nil {
		unix.Munmap(h.buf)
	}
}

// RunsKind is the kind of the source's RUNS frames; MaxRunsPerFrame is
// how many runs one RUNS frame names at most.
const (
	RunsKind        = runsKind
	MaxRunsPerFrame = maxRunsSize / runSize
)

// SetClaimWaitHook makes a sending session call hook(false) before and
// hook(true) after each wait of SendPages for an urgent copy, queued
// before, of a page it queues (claim).
func (t *Transport) SetClaimWaitHook(hook func(waited bool)) { t.claimWait = hook }

// UrgentWaiting is the number of urgent messages the open session holds
// for RecvUrgent (or for a PushUrgent to hand over).
func (t *Transport) UrgentWaiting() int { return t.openSession().Umsgs.Held() }

// openSession is t's open session (nil: none).
func (t *Transport) openSession() *session {
	s, _ := t.slot.Get()
	return s
}

// FailChannelRead makes the open session's reader of its control
// channel (urgent: of its urgent channel) fail as it would on a broken
// socket, its write side whole: the socket's read deadline passes.
func (t *Transport) FailChannelRead(urgent bool) {
	s := t.openSession()
	c := s.raw
	if urgent {
		c = s.uraw
	}
	c.SetReadDeadline(time.Unix(1, 0))
}

// FailRepost makes the open receiver fail each re-post of a bulk
// receive buffer (after taking its COMMIT or MARK) with err, a fault of
// the destination's own.
func (t *Transport) FailRepost(err error) { t.openSession().rcv.repost.Store(&err) }
