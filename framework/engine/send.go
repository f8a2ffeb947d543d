package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
)

// batchPages bounds the pages handed to the transport in one SendPages.
const batchPages = 2048

// sender is one outgoing migration.
type sender struct {
	src    framework.Source
	tr     transport.Transport
	opt    Options
	layout framework.Layout
	tag    migrationTag // this migration's, in HELLO and every RESUME
	mem    [][]byte
	holes  []holes
	base   []uint64 // first page index of each region

	start     time.Time
	pass      int
	phase     Phase
	lastProg  time.Time    // last progress event of the send loop
	stats     *statsPoller // the transport's counters, while it is open
	rep       Report
	rate      float64 // data pages per second, last measured
	ratePass  int     // the pass that measured rate (0: none yet)
	dataShare float64 // of the pages that pass classified, the share it sent as data, hinted pages free (forcedSwitchRefused)
	peakRate  float64 // the fastest rate a live pass measured (forcedSwitchRefused)
	finalFree float64 // of the pages the last dirty pass classified, the share the final pass would send as zero runs (estimateDowntime); 0: charge all
	freeSecs  float64 // what classifying one of those took that pass, in seconds (estimateDowntime: the final pass reads them too)
	msgs      chan transport.Message
	recvErr   chan error
	capStart  time.Time
	capBytes  uint64
	estimate  time.Duration
	remaining uint64
	pending   *bitmap.Bitmap // pages dirtied during the last live pass
	carry     *bitmap.Bitmap // pages probes saw written that the pass in progress will not send again
	probeAt   time.Time      // the current probe window began (pass start or last probe)
	probeSent uint64         // PagesSent when it began
	gen       uint64         // dirty syncs so far: the current hint generation
	freeSent  *bitmap.Bitmap // pages whose last send was a skip on a free/unused hint
	hints     *hinter
	ho        handoverState
	clock     phaseClock    // where the time goes (timing.go)
	meter     rateMeter     // Progress.Throughput
	queued    uint64        // pages handed to SendPages in this transport session (POSTCOPY carries it)
	syncTook  time.Duration // the last dirty sync (estimateDowntime)
	rtt       rttMeter      // the message round trip on this link (estimateDowntime)
	lastSend  time.Time     // the last SendPages call began (sendPass's rttMeter sample)
	peer      stallWatch    // a pre-copy pass's transport calls (watchPeer)
	helloSent bool          // HELLO went out: the destination took this session (mustAbort)

	// Post-copy (postcopy_send.go).
	openReq  transport.OpenRequest // to open the transport again after post-copy broke
	trOpen   bool                  // the transport has a session
	trHeld   bool                  // a reconnect ended the last session, or a failed Open, with CloseHolding: the last close still calls Close
	wireBase uint64                // bytes on the wire of sessions closed before this one
	stopRecv context.CancelFunc    // ends the receive goroutine of this session
	pcReady  bool                  // READY said the destination can serve post-copy
	pcAsked  bool                  // StartPostcopy fired (honoured or not)
	pcWhy    string                // why the switch to post-copy happens; "" while pre-copy
	pcUnsent *bitmap.Bitmap        // at the switch: pages the live passes still owed
	pcStalls int                   // passes in a row whose estimate did not fall
	pc       *pcSend               // from the switch on
	quiet    int                   // post-copy reconnect tries in a row whose RESUME got no answer (answer, quietBound)
	held     *heldCtx              // Send's context: cancellable until COMMIT (hold.go)
}

// Send migrates src's VM through tr, which must not be open yet.
//
// In post-copy (Options.Postcopy, StartPostcopy) the VM runs on the
// destination from RUNNING on while Send still sends the pages it owes;
// Send returns once the destination said every page arrived (SETTLED).
// From RUNNING on Send never resumes the VM: if the connection breaks it
// opens the transport again for up to ReconnectTimeout, and then gives
// up with an error wrapping ErrPostcopyBroken, leaving the VM paused.
// From the moment it decides to write COMMIT (pre-copy or post-copy) ctx
// no longer ends Send: a cancel or deadline then is logged and ignored,
// as stopping could only leave the handover unknown (pre-copy: the
// destination answers COMMIT within SwitchoverTimeout) or lose the guest
// (post-copy; hold.go); Receive does the same from COMMIT on. A caller
// that must know whether its cancel took (a VMM answering an operator)
// gives Send a NewCancel context and cancels through its Cancel. A
// cancel before the hold ends Send cancelled (Report.Status), also when
// the session broke on it first (heldCtx.cancelled).
//
// On success (the destination answered COMMIT with RUNNING) the VM stays
// paused, for good: it runs on the destination, and the caller should end
// it. On any failure before COMMIT is written, Send resumes the VM and
// returns the error. If the connection ends after COMMIT was (being)
// written and before RUNNING, Send cannot know whether the destination
// runs the VM: it leaves the VM paused and returns an error wrapping
// ErrHandoverUnknown (Report.Status "handover-unknown"). The caller must
// then neither resume nor end the VM until the destination was asked
// (docs/HANDOVER.md); Send never does either on a timer.
func Send(ctx context.Context, src framework.Source, tr transport.Transport, opt Options) (Report, error) {
	opt.defaults()
	securityWarnings(opt)
	s := &sender{src: src, tr: tr, opt: opt, layout: src.RAM(), start: time.Now(), phase: PhaseSetup, tag: tagFor(opt.MigrationID)}
	s.clock = newPhaseClock(s.phase, s.start)
	s.ho.h = HandoverLive
	s.hints = newHinter(opt.Hints, s.layout.Pages(), opt.Log.Info)
	if len(opt.Hints) > 0 {
		s.freeSent = bitmap.New(s.layout.Pages())
	}
	s.held = holdable(ctx, func(cause error) {
		s.opt.Log.Warn("cancel ignored: COMMIT is going or has gone out, and the guest may run on the destination; "+
			"the migration ends when the destination answers (within switchover_timeout), and in post-copy once every page "+
			"it needs from this side arrived or the connection stayed broken for reconnect_timeout", "cause", cause)
	})
	err := s.run(s.held)
	if err != nil && !s.ho.get().Final() {
		_ = s.ho.move(HandoverFailed)
	}
	err = s.held.cancelled(err, s.ho.get())
	s.held.release()
	s.clock.workDone(time.Now()) // if run ended before it marked it
	s.hints.close(true)
	s.rep.Hints = s.hints.finish()
	for _, st := range s.hints.stats {
		if st.Skipped > 0 {
			if s.rep.SkippedBy == nil {
				s.rep.SkippedBy = map[string]uint64{}
			}
			s.rep.SkippedBy[st.Name] += st.Skipped
		}
	}
	end := time.Now()
	s.clock.fill(&s.rep, end)
	s.rep.TotalMS = end.Sub(s.start).Milliseconds()
	s.rep.TotalPages = s.layout.Pages()
	if secs := time.Since(s.start).Seconds(); secs > 0 {
		s.rep.ThroughputMB = float64(s.rep.BytesWire) / secs / 1e6
	}
	s.rep.Handover = s.ho.get()
	s.rep.Status = reportStatus(err, s.rep.Handover)
	if err != nil {
		s.rep.Error = err.Error()
	}
	s.setPhase(PhaseDone)
	return s.rep, err
}

func (s *sender) run(ctx context.Context) (err error) {
	if err := s.layout.Check(); err != nil {
		return err
	}
	files, ram, err := RAMFiles(s.layout, transport.RoleSend)
	if err != nil {
		return err
	}
	defer closeFiles(files)
	for i, r := range s.layout {
		s.mem = append(s.mem, s.src.Memory(i))
		s.holes = append(s.holes, holes{fd: int(files[ram[i].File].Fd())})
		if i == 0 {
			s.base = append(s.base, 0)
		} else {
			s.base = append(s.base, s.base[i-1]+s.layout[i-1].Size/framework.PageSize)
		}
		if uint64(len(s.mem[i])) != r.Size {
			return fmt.Errorf("memory of region %d is %d bytes, layout says %d", i, len(s.mem[i]), r.Size)
		}
	}
	s.openReq = transport.OpenRequest{Role: transport.RoleSend, Config: s.opt.Transport, RAM: ram, Files: files, Credentials: s.opt.Credentials,
		Tag: transport.Tag(s.tag)} // named in the transport's own handshake, on every Open of this migration
	if err := openTransport(ctx, s.tr, s.openReq, &s.rep); err != nil {
		s.tr.Close() // a launched plugin started a process for the Open: Send leaves none running
		return fmt.Errorf("open transport: %w", err)
	}
	s.trOpen = true
	s.stats = startStats(ctx, s.tr)
	defer func() {
		s.stats.close() // joined before the last count and Close
		s.captureStats(selfStopped(err))
		s.closeTransport(false, transport.Stats{})
		s.pc.close() // the transport no longer takes from it
	}()
	s.startReceive(ctx)
	defer s.stopReceive() // joined: receive returns on its context
	defer func() {
		if h := s.ho.get(); err != nil && s.mustAbort(err) && (h == HandoverLive || h == HandoverSwitchover || h == HandoverFailed) {
			s.abort(err)
		}
	}()
	if err := s.handshake(ctx); err != nil {
		return err
	}
	if err := s.src.StartDirtyLog(); err != nil {
		return fmt.Errorf("start dirty log: %w", err)
	}
	defer s.src.StopDirtyLog()
	defer func() { s.clock.workDone(time.Now()) }() // the first deferred call to run: teardown begins
	if err := s.live(ctx); err != nil {
		return err
	}
	if s.pcWhy != "" {
		return s.switchToPostcopy(ctx)
	}
	return s.switchOver(ctx)
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// startReceive starts forwarding the destination's messages of the
// transport's session to s.msgs (closed when the session or ctx ends).
func (s *sender) startReceive(ctx context.Context) {
	rctx, stop := context.WithCancel(ctx)
	msgs, errc := make(chan transport.Message, 4), make(chan error, 1)
	s.msgs, s.recvErr, s.stopRecv = msgs, errc, stop
	go s.receive(rctx, msgs, errc)
}

// stopReceive ends the receive goroutine and joins it; idempotent.
func (s *sender) stopReceive() {
	if s.stopRecv == nil {
		return
	}
	s.stopRecv()
	<-s.recvErr
	s.stopRecv = nil
}

// receive forwards the destination's messages until ctx ends.
func (s *sender) receive(ctx context.Context, msgs chan<- transport.Message, errc chan<- error) {
	for {
		m, err := s.tr.RecvMessage(ctx)
		if err != nil {
			close(msgs)
			errc <- err
			return
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			close(msgs)
			errc <- ctx.Err()
			return
		}
	}
}

// errDestinationAborted marks an ABORT from the destination: it will
// never run the VM.
var errDestinationAborted = errors.New("destination aborted")

// errDestinationBroken marks a BROKEN from the destination: post-copy
// broke for good there, after the VM ran there.
var errDestinationBroken = errors.New("post-copy broke for good on the destination")

// next returns the next message from the destination; ABORT becomes an
// error wrapping errDestinationAborted, BROKEN one wrapping
// errDestinationBroken.
func (s *sender) next(ctx context.Context) (transport.Message, error) {
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return m, fmt.Errorf("destination went away: %w", transport.ErrClosed)
		}
		switch m.Kind {
		case msgAbort:
			return m, fmt.Errorf("%w: %s", errDestinationAborted, m.Payload)
		case msgBroken:
			return m, fmt.Errorf("%w: %s", errDestinationBroken, m.Payload)
		}
		return m, nil
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	}
}

// await waits for a message of kind want; anything else is an error.
func (s *sender) await(ctx context.Context, want uint32) error {
	m, err := s.next(ctx)
	if err == nil && m.Kind != want {
		err = fmt.Errorf("%w: message %d from the destination, want %d", errMalformed, m.Kind, want)
	}
	return err
}

// handshakeTimeout bounds the handshake on either side: from HELLO's
// send to READY's arrival at the source, and READY's send at the
// destination. A variable for tests.
var handshakeTimeout = 30 * time.Second

// handshake sends HELLO and reads READY, within handshakeTimeout. When
// this side may switch to post-copy, READY says whether the destination
// can serve it: in mode "always" a destination that cannot fails the
// migration here, before any page moved (the VM keeps running here);
// otherwise pre-copy goes on and the reason is logged once.
func (s *sender) handshake(ctx context.Context) error {
	flags := uint32(helloTransportTag) // s.openReq.Tag
	if s.maySwitch() {
		flags |= helloMaySwitch
	}
	if s.opt.VerifyPages { // switchOver, switchToPostcopy: no COMMIT before a clean VERIFIED
		flags |= helloCheck
	}
	sent := time.Now()
	// HELLO's send is bounded too: a transport plugin that stopped (this
	// side's, or the destination's it waits on) keeps it from returning.
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	// Set before the send: a HELLO whose send failed may still have
	// reached the destination, which then reports it.
	s.rep.TagFingerprint = s.tag.fingerprint()
	if err := s.tr.SendMessage(hctx, transport.Message{Kind: msgHello, Payload: encodeHello(s.layout, flags, s.tag)}); err != nil {
		if hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("not sent within %v (this side's transport plugin or the destination stopped?): %w", handshakeTimeout, err)
		}
		return fmt.Errorf("send HELLO: %w", s.refusal(err))
	}
	s.helloSent = true
	m, err := s.next(hctx)
	s.rtt.sample(time.Since(sent)) // one sample: the destination's start and its HELLO's handling included
	if err == nil && m.Kind != msgReady {
		err = fmt.Errorf("%w: %s from the destination instead of READY", errMalformed, msgName(m.Kind))
	}
	var rflags uint32
	var why string
	if err == nil {
		rflags, why, err = decodeReady(m.Payload)
	}
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	s.rep.Mode = ModePrecopy
	// Only a HELLO with helloMaySwitch asks: its other flags
	// (helloTransportTag, always set) say nothing of post-copy.
	asked := flags&helloMaySwitch != 0
	s.pcReady = asked && rflags&readyPostcopy != 0
	if !asked || s.pcReady {
		return nil
	}
	if why == "" {
		why = "it gave no reason"
	}
	if s.opt.Postcopy == PostcopyAlways {
		// run's ABORT tells the destination.
		return fmt.Errorf("postcopy = \"always\", but the destination cannot serve post-copy: %s (nothing was sent; the VM keeps running here)", why)
	}
	s.opt.Log.Warn("the destination cannot serve post-copy: this migration stays pre-copy", "mode", s.opt.Postcopy.String(), "why", why)
	return nil
}

// refusal is the destination's ABORT that explains err, a failed HELLO,
// if one arrived, else err: a destination that closes the session before
// this side's first message went out (it closed it as silent, its
// receiver.first bound having passed before this side's Open returned)
// writes why first, and that is what the operator must read, not a
// closed session. It looks at the messages that arrived for at most
// refusalWait.
func (s *sender) refusal(err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), refusalWait)
	defer cancel()
	for {
		m, nerr := s.next(ctx)
		switch {
		case errors.Is(nerr, errDestinationAborted):
			return nerr
		case nerr != nil:
			return err
		}
		s.opt.Log.Warn("message from the destination before HELLO went out, ignored", "kind", msgName(m.Kind))
	}
}

// refusalWait bounds refusal's look at what the destination sent.
const refusalWait = time.Second

// mustAbort reports whether run, failing with err, tells the
// destination (ABORT). It must not wait for a COMMIT that never comes,
// nor, from HELLO on, for the handshake's end (a cancel or a failure
// before READY came): it would wait for its stall bound. After RUNNING
// in post-copy there is nothing to abort (run checks the handover
// state). No ABORT goes out before HELLO did (the destination has not
// taken this session: it closes it as silent and waits on for another;
// an ABORT first would fail it), nor in answer to the destination's own
// ABORT (it gave up, or refused this source and waits on for its own),
// nor through a plugin that stopped answering (selfStopped).
func (s *sender) mustAbort(err error) bool {
	return s.helloSent && !errors.Is(err, errDestinationAborted) && !selfStopped(err)
}

// abort tells the destination why we give up and gets the VM running.
func (s *sender) abort(cause error) {
	if cause == nil {
		cause = errors.New("source gave up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: reason(cause)})
}

// captureStats records the transport's byte count while the session is
// open: the last Stats call of a migration, or with mute (its plugin
// stopped answering: selfStopped) or when that call fails, the stats
// poller's last counters. Sessions closed before (post-copy's
// reconnects) count in wireBase.
func (s *sender) captureStats(mute bool) {
	s.rep.BytesWire = s.wireBase
	if !s.trOpen {
		return
	}
	st := s.stats.get()
	if !mute {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if now, err := s.tr.Stats(ctx); err == nil {
			st = now
		}
	}
	s.rep.BytesWire = s.wireBase + st.BytesWire
}

// closeTransport ends the transport's session, if it has one.
//
// With reconnect (post-copy gives the session up and opens another) the
// session ends now, through transport.CloseHolding (endSession), not at
// the next Open: a session the source gave up on with its connection up
// (a failed call, a stall, a RESUME that went unanswered) breaks for the
// destination at once instead of staying connected through the
// reconnect's backoff (50 ms to 2 s), also under a wrapper whose Close
// leaves the real close to a later teardown and which forwards
// CloseHoldingListeners (framework/session's). Its bytes on the wire
// then count in wireBase (endSession: the transport's totals asked after
// that close, what the close itself moved too, or seen, the last
// counters polled, when it cannot answer, as when its plugin process
// died). A sending transport holds no listening sockets; CloseHolding
// keeps any it holds until the last Close.
//
// Without reconnect it is the migration's last close: Close, whose
// session's bytes captureStats counted before it, so that the report
// does not wait for a wrapper's teardown (a plugin process's exit); what
// that close itself still moves is not counted.
//
// The last close finds no session after a reconnect that did not get
// one back. It still closes the transport, counting nothing, when the
// last session, or the last try's failed Open, ended holding (trHeld: a
// post-copy reopen ends a failed Open with CloseHolding before the next
// try, as the contract asks; Close lets go of what CloseHolding kept).
func (s *sender) closeTransport(reconnect bool, seen transport.Stats) {
	if !s.trOpen {
		if !reconnect && s.trHeld {
			s.trHeld = false
			s.tr.Close()
		}
		return
	}
	s.trOpen = false
	if !reconnect {
		s.tr.Close()
		return
	}
	s.trHeld = true
	s.wireBase += endSession(s.tr, seen).BytesWire
}
