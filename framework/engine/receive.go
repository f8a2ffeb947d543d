package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// Receive accepts one incoming migration into dst through tr, which must
// not be open yet: it waits for the source (at most IncomingTimeout;
// another migration's source met meanwhile is refused, a session that
// sends no HELLO within SwitchoverTimeout is closed, and the wait goes
// on, waitAgain), checks that both sides have the same RAM layout, lets
// the transport write pages, loads the state and answers LOADED; on
// COMMIT it resumes the VM and answers RUNNING, unless the page check
// forbids it (a verdict of differing pages, or the check still open:
// commitRefused), which fails it as below.
//
// A failure before LOADED, an ABORT, a COMMIT refused, or a VM that
// will not resume leaves dst not running and tells the source (ABORT;
// in post-copy, from COMMIT on, or from a fault service that failed
// once COMMIT may be on its way, also to a source that lost it and
// reconnects: pcRecv.abortCommit, setupFailed); the caller should then
// discard dst. If the stream ends (or goes quiet
// for SwitchoverTimeout; between two of the page check's HASHES,
// nothing moves for the stall bound: recvHashes) after LOADED and
// before COMMIT, or LOADED does not get out (in post-copy, during the
// page check while pages are owed, from LOADED on when the source
// promised the check in HELLO, Receive fails instead: checkBroke), the
// source may have written COMMIT: Receive leaves dst paused and returns
// an error wrapping ErrHandoverUnknown; in post-copy, outside the
// check's open window, only once no RESUME came within
// ReconnectTimeout (a source that committed sends one; it is answered
// ABORT and Receive fails: lostAfterLoaded, pcRecv.uncommitted), and
// not when the fault service failed meanwhile (Receive fails). The
// caller must then neither resume nor discard dst until the source was
// asked (docs/HANDOVER.md). A cancel of ctx before COMMIT was acted on
// is not such an end: the connection works, so dst is not resumed and
// the source is told (ABORT), as for a VM that will not resume; from
// COMMIT on (acted on: the VM is resumed here), a cancel is ignored
// (hold.go). A caller that must know whether its cancel took cancels
// through a Cancel (NewCancel's ctx). A cancel before COMMIT was acted
// on ends Receive cancelled (Report.Status), also when the session
// broke on it first, unless the handover is unknown by then (a
// post-copy stream that broke after LOADED).
func Receive(ctx context.Context, dst framework.Target, tr transport.Transport, opt Options) (Report, error) {
	opt.defaults()
	securityWarnings(opt)
	var rep Report
	r := newReceiver(dst, tr, opt)
	r.held = holdable(ctx, r.cancelAfterHold)
	err := r.run(r.held, &rep)
	if err != nil && !r.ho.get().Final() {
		_ = r.ho.move(HandoverFailed) // before the transport opened: nobody to tell
	}
	err = r.held.cancelled(err, r.ho.get())
	r.held.release()
	rep.Handover = r.ho.get()
	rep.Mode, rep.TagFingerprint = r.mode, r.tagPrint
	if r.pc != nil {
		r.pc.fill(&rep)
	}
	end := time.Now()
	r.clock.fill(&rep, end)
	rep.TotalMS = end.Sub(r.start).Milliseconds()
	rep.TotalPages = r.layout.Pages()
	rep.Status = reportStatus(err, rep.Handover)
	if err != nil {
		rep.Error = err.Error()
	}
	r.phase = PhaseDone // from any phase (phaseNext)
	opt.Progress(Progress{Phase: r.phase, BytesWire: rep.BytesWire, PagesSent: rep.PagesSent,
		PagesZero: rep.PagesZero, Elapsed: time.Since(r.start), TotalPages: rep.TotalPages, Handover: rep.Handover,
		TagFingerprint: rep.TagFingerprint})
	return rep, err
}

func (r *receiver) run(ctx context.Context, rep *Report) error {
	if err := r.layout.Check(); err != nil {
		return err
	}
	files, ram, err := RAMFiles(r.layout, transport.RoleReceive)
	if err != nil {
		return err
	}
	defer closeFiles(files)
	for i, f := range files {
		if !ShrinkSealed(f) {
			r.opt.Log.Warn("guest RAM file is not sealed against shrinking: a transport plugin that truncated it would kill this process (create guest RAM with memfd_create(MFD_ALLOW_SEALING))", "file", i)
		}
	}
	r.emptyAtStart = emptyRegions(r.layout)
	r.progress()
	r.openReq = transport.OpenRequest{Role: transport.RoleReceive, Config: r.opt.Transport, RAM: ram, Files: files,
		Credentials: r.opt.Credentials}
	if id := r.opt.MigrationID; id != "" {
		// The transport refuses another migration's source before it
		// writes a page; without an ID any source's session opens, and
		// its HELLO decides (hello). Reconnects take HELLO's tag (when the
		// source's transport named it: helloTransportTag).
		r.openReq.Tag = transport.Tag(tagFor(id))
	}
	if err := r.open(ctx, r.openReq, rep); err != nil {
		// A receiving transport may hold its listening port after an Open
		// that failed (transport.Listen): Close lets it go.
		r.tr.Close()
		return err
	}
	defer func() {
		seen := r.seen // a plugin that stopped answering is not asked again (selfStopped)
		if !selfStopped(err) {
			seen = r.pollStats()
		}
		st := addStats(r.wireBase, seen) // sessions before a reconnect too
		rep.BytesWire, rep.PagesSent, rep.PagesZero = st.BytesWire, st.PagesData, st.PagesZero
		rep.BytesWireRefused = r.refusedWire
		r.tr.Close()
	}()
	lctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r.stopLoop = stop
	err = r.loop(lctx)
	for err != nil && r.waitAgain(err) {
		if err = r.open(ctx, r.openReq, rep); err == nil {
			err = r.loop(lctx)
		}
	}
	r.clock.workDone(time.Now())
	if err != nil {
		r.giveUp(err)
	}
	if r.pc != nil {
		r.pc.close()
	}
	if r.check != nil {
		r.check.close()
	}
	return err
}

// open opens the transport within IncomingTimeout of Receive's start
// (a second Open, after waitAgain, gets what is left of it) and records
// in rep how the session is protected.
func (r *receiver) open(ctx context.Context, req transport.OpenRequest, rep *Report) error {
	octx := ctx
	if r.opt.IncomingTimeout > 0 {
		var cancel context.CancelFunc
		octx, cancel = context.WithDeadline(ctx, r.start.Add(r.opt.IncomingTimeout))
		defer cancel()
	}
	err := r.openSession(octx, req, rep)
	switch {
	case err == nil:
		return nil
	case octx.Err() == context.DeadlineExceeded && ctx.Err() == nil && r.refused > 0:
		return fmt.Errorf("no source of this migration connected within incoming_timeout %v; sessions of another migration "+
			"refused meanwhile: %d (does another job name this destination's address, or this job another destination's?)%s: %w",
			r.opt.IncomingTimeout, r.refused, r.silentNote(), err)
	case octx.Err() == context.DeadlineExceeded && ctx.Err() == nil && r.silent+r.ended > 0:
		return fmt.Errorf("no source of this migration connected within incoming_timeout %v%s: %w",
			r.opt.IncomingTimeout, r.silentNote(), err)
	case octx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		return fmt.Errorf("no source connected within incoming_timeout %v (is the source's transport address right?): %w",
			r.opt.IncomingTimeout, err)
	}
	return fmt.Errorf("open transport: %w", err)
}

// silentNote is what open's timeout error says of silent sessions and
// of sessions that ended before their HELLO.
func (r *receiver) silentNote() string {
	var note string
	if r.silent > 0 {
		note = fmt.Sprintf("; sessions closed for sending no HELLO within switchover_timeout %v (doubled for each in a row): %d",
			r.opt.SwitchoverTimeout, r.silent)
	}
	if r.ended > 0 {
		note += fmt.Sprintf("; sessions that ended before their HELLO: %d", r.ended)
	}
	return note
}

// loop handles the source's messages until the VM runs (nil) or a
// failure. Once LOADED is out, a silent or broken stream makes the
// handover unknown.
func (r *receiver) loop(ctx context.Context) error {
	for {
		m, err := r.recv(ctx)
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errPostcopySetup) {
				return r.pc.setupFailed(cause) // the VM never runs here: fail, and tell the source
			}
			if r.ho.get() == HandoverLoaded && r.held.Err() != nil {
				// Cancelled by the caller, not cut: the connection still
				// works, so this side can say it will never run the VM
				// (giveUp: ABORT, and the source resumes it), whether or
				// not COMMIT is already on its way.
				return fmt.Errorf("cancelled after LOADED, before COMMIT: this destination will not run the VM: %w", r.held.Err())
			}
			err = fmt.Errorf("migration stream: %w", err)
			if r.ho.get() == HandoverLoaded {
				return r.lostAfterLoaded(ctx, err)
			}
			return err
		}
		done, err := r.handle(ctx, m)
		if err != nil || done {
			return err
		}
	}
}

// lostAfterLoaded ends a migration whose stream broke (or went silent,
// or stalled) after LOADED's first byte and before COMMIT came, or whose
// LOADED did not get out (stateChunk): the source may have read LOADED,
// or part of it, and this side cannot know whether it then wrote COMMIT.
//
//   - the page check found differing pages, or (post-copy, pages owed)
//     the check is open (checkBroke): no COMMIT can have been written
//     and this copy is wrong or no whole guest: failed (giveUp: ABORT
//     if it still can);
//   - post-copy, the check not open (none promised, or VERIFIED's send
//     began): a source that committed reconnects with RESUME, its COMMIT
//     lost; listen for it and answer ABORT (pcRecv.uncommitted), then
//     handover-unknown if none came within reconnect_timeout (failed
//     if the fault service failed while it listened, as setupFailed
//     decides) or a cancel ended the listening;
//   - else (pre-copy, or post-copy holding every page while the check
//     is open: no COMMIT was written, so no RESUME comes to wait for):
//     handover-unknown at once; the whole guest is here.
//
// What it cannot tell: a source that never read LOADED (it resumed its
// VM at its switch-over deadline and sends no RESUME) from one that
// committed and died; in post-copy the first costs reconnect_timeout of
// listening before the handover is unknown, as after a break.
//
// A post-copy fault service that failed meanwhile (ctx cut with
// errPostcopySetup: watchSetup) decides first: the VM never runs here,
// so this side fails and tells the source as setupFailed does, whatever
// broke. Until 2026-12-08 a VERIFIED whose send that failure cut came
// here under that cut context, uncommitted's wait for a RESUME ended at
// once, and the destination ended handover-unknown at once, no ABORT
// sent, though it knew it would never run the VM
// (TestPostcopyLaneFailedAtVerifiedAbortLost).
func (r *receiver) lostAfterLoaded(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errPostcopySetup) && r.pc != nil {
		// err as text: a send the failure cut wraps context.Canceled,
		// and the report must say failed, not cancelled.
		return r.pc.setupFailed(fmt.Errorf("%w (%v)", cause, err))
	}
	if r.check != nil && r.check.bad > 0 {
		return fmt.Errorf("%w, after the page check found %d differing pages (first: page %d): the source never "+
			"commits on that, and this copy is wrong; it never ran the VM", err, r.check.bad, r.check.firstBad) // giveUp: failed
	}
	if r.checkBroke() {
		return fmt.Errorf("%w, while the page check is open (before VERIFIED): the source commits only after a clean "+
			"one, and resumes the VM without reconnecting; this destination lacks pages only the source holds, "+
			"and never ran the VM", err) // giveUp: failed, ABORT if it still can
	}
	if r.pc != nil && r.pc.on && !r.checkOpen() {
		return r.pc.uncommitted(ctx, err)
	}
	return r.unknown(err)
}

// checkBroke reports whether a stream that broke (or stalled) after
// LOADED, or a LOADED that did not get out, fails this destination
// rather than leaving the handover unknown: in post-copy, during the
// page check (checkOpen: VERIFIED's send has not begun), while pages
// are still owed. The source cannot have committed (it writes COMMIT
// only on VERIFIED), and after a failed check it resumes its VM and
// never reconnects, so uncommitted would wait reconnect_timeout for
// nobody; and this destination's copy lacks pages only the source
// holds, so it is no copy of the guest should the source have died. A
// pre-copy destination (or a post-copy one that holds every page)
// stays handover-unknown: it holds the whole guest and cannot tell a
// source that resumed from one whose VMM died, beside which its copy
// is the only one (docs/model: property (b), mutant 8), the check
// promised or not; a post-copy one ends so at once, without listening
// for a RESUME (pcRecv.uncommitted), which only a source whose COMMIT
// went out sends. Once VERIFIED's send has begun the source may
// commit: unknown, in either mode (in post-copy after listening for
// that RESUME: lostAfterLoaded), unless the check found differing
// pages: the source never commits on that verdict, and this copy is
// known to be wrong (failed, in either mode).
func (r *receiver) checkBroke() bool {
	if r.check != nil && r.check.bad > 0 {
		return true
	}
	return r.pc != nil && r.pc.on && r.checkOpen() && r.pc.svc != nil && r.pc.svc.Pending() > 0
}

// checkOpen reports whether the page check is under way and this side
// has not begun to send VERIFIED, so that no COMMIT can have been
// written: a HASHES came and more are due, or none came yet and HELLO
// promised the check (helloCheck; from LOADED's first byte on, as
// checkBroke asks only after it). A source without the flag (before
// 2026-12-07) promises nothing before its first HASHES: a break there
// may be a lost COMMIT. What it cannot tell: a source that sets the flag
// and commits without VERIFIED all the same (a bug) is believed; this
// side then fails, never runs the VM, and that source, whose reconnect
// finds nobody, ends handover-unknown beside a failed destination,
// which migrate resolves by resuming it. Such a COMMIT that arrives is
// refused (commitRefused) for the same reason.
func (r *receiver) checkOpen() bool {
	if r.check != nil {
		return r.check.pending()
	}
	return r.checkPromised
}

// errCommitRefused: a COMMIT the page check forbids (commitRefused).
var errCommitRefused = errors.New("COMMIT refused")

// commitRefused says why this destination must not act on a COMMIT that
// just came, or returns nil: the page check found differing pages (a
// verdict the source never commits on: this copy is known to be wrong),
// or it is open (checkOpen: HASHES are still due, or HELLO promised the
// check and none came yet: this copy is not checked). A source that
// keeps the protocol writes COMMIT only after a clean VERIFIED, so only
// a buggy one (authenticated, so trusted) is refused; the source's rule
// alone kept a wrong copy from running before (docs/model, mutants 18
// and 19). The same holds in post-copy, whose check runs before COMMIT
// too. The caller fails and sends ABORT: a source that reads it after
// its COMMIT resumes the VM (sender.commit). In pre-copy it is sent once
// (giveUp), and a source that does not read it (its session broke) ends
// handover-unknown beside a failed destination, which migrate resolves
// by resuming it; in post-copy such a source reconnects with RESUME, and
// the ABORT lingers to answer it (pcRecv.refuseCommit). What it cannot
// tell: a source without the check that sends no HASHES promises
// nothing, and its COMMIT is acted on as ever; in post-copy, pages
// absent at the check are compared only as they land: one that landed
// differing before COMMIT came refuses it too (landCheck: the VM never
// ran, the source still holds the page, so it resumes), one whose report
// the landed lane had not taken yet, or that lands after, is known only
// once the VM runs (ErrPostcopyCheck).
func (r *receiver) commitRefused() error {
	const never = "this destination never runs the VM (a source that commits there breaks the protocol: " +
		"resume the VM on the source)"
	var landedBad, landedFirst uint64
	if r.pc != nil && r.pc.check != nil {
		landedBad, landedFirst = r.pc.check.verdict()
	}
	switch {
	case r.check != nil && r.check.bad > 0:
		return fmt.Errorf("%w: it came after the page check found %d differing pages (first: page %d), a verdict the "+
			"source never commits on: this copy is wrong; %s", errCommitRefused, r.check.bad, r.check.firstBad, never)
	case landedBad > 0:
		return fmt.Errorf("%w: %d pages that landed after the switch, before COMMIT, differed from the source's "+
			"(first: page %d): this copy is wrong; this destination never runs the VM (resume it on the source)",
			errCommitRefused, landedBad, landedFirst)
	case r.check != nil && r.checkOpen():
		return fmt.Errorf("%w: it came during the page check, with %d of %d pages' hashes in, before VERIFIED: the "+
			"source commits only after a clean one, and this copy is not checked; %s", errCommitRefused, r.check.next,
			r.layout.Pages(), never)
	case r.checkOpen():
		return fmt.Errorf("%w: it came before the page check the source promised in HELLO (no HASHES yet, no "+
			"VERIFIED): the source commits only after a clean one, and this copy is not checked; %s", errCommitRefused, never)
	}
	return nil
}

// recv waits for the next message: a fresh session's first (HELLO) at
// most SwitchoverTimeout (first), the next ones while pages arrive until
// nothing moved for StallTimeout (recvWatched), after LOADED at most
// SwitchoverTimeout, but the page check's next HASHES under the stall
// rule (recvHashes).
func (r *receiver) recv(ctx context.Context) (transport.Message, error) {
	switch r.ho.get() {
	case HandoverWaiting:
		return r.first(ctx)
	case HandoverReceiving:
		return r.recvWatched(ctx)
	case HandoverLoaded:
		if r.check != nil && r.check.pending() {
			return r.recvHashes(ctx)
		}
		rctx, cancel := context.WithTimeout(ctx, r.opt.SwitchoverTimeout)
		defer cancel()
		return r.tr.RecvMessage(rctx)
	}
	return r.tr.RecvMessage(ctx)
}

// recvWatched waits for the source's next message between HELLO and
// LOADED. The pages arrive meanwhile without a message (the transport
// writes them), so progress is a message or the transport's byte count
// growing; a session in which neither happened for StallTimeout, and at
// least SwitchoverTimeout, fails with errStalled. A source whose process
// or transport plugin stopped, or a link that no longer moves, keeps the
// connection up: before this the destination waited on it until its
// caller cancelled. The VM never ran here, so the caller discards it;
// the source, should it still hear, is told (giveUp: ABORT) and keeps
// running the VM.
//
// A source in its switch-over sends nothing from the pause through its
// final dirty sync, or its SaveState when no page is left, for up to its
// SwitchoverTimeout; this side cannot tell that from a source that
// stopped, hence the second bound (the sides share the job's). Nothing
// is watched here while this side handles a message; the one handler
// that waits on the source, a post-copy LoadState that faults, is
// watched by the same rule on its own (pcRecv.loadState).
func (r *receiver) recvWatched(ctx context.Context) (transport.Message, error) {
	return r.recvStalling(ctx, "no message and no page came from the source (its process or transport plugin "+
		"stopped, or the link no longer moves); this destination never ran the VM",
		"no message and no page came, and this side's transport plugin stopped answering (its last Stats call: %v): "+
			"it, not the source, is likely what stopped (its process stopped, or it hangs); this destination never ran the VM")
}

// recvHashes waits for the page check's next HASHES, once one came and
// before the last: under the stall rule of recvWatched, not
// SwitchoverTimeout per message. The source hashes each chunk before
// it sends it, and its sends wait on this side's checking under the
// same rule (sendHashes); a source on a slow host (emulated KVM: over
// 5 s per chunk of the 128 Ki-page chunks before 2c28b7f) is not taken
// for gone while it hashes on. What it cannot tell: a source hashing
// one chunk for longer than the bound from one that stopped. A stall
// ends it as a break does (loop).
func (r *receiver) recvHashes(ctx context.Context) (transport.Message, error) {
	return r.recvStalling(ctx, "no HASHES and no byte came from the source during the page check (its process or "+
		"transport plugin stopped, or the link no longer moves)",
		"no HASHES and no byte came during the page check, and this side's transport plugin stopped answering (its "+
			"last Stats call: %v): it, not the source, is likely what stopped (its process stopped, or it hangs)")
}

// recvStalling receives the next message under the stall rule
// (stallLimit; progress is a message or the transport's byte count
// growing); peer and self say what a stall means (stalledError).
func (r *receiver) recvStalling(ctx context.Context, peer, self string) (transport.Message, error) {
	r.stall.limit = r.stallLimit()
	wctx, stop := r.stall.watchCounting(ctx, r.wireBytes)
	defer stop()
	m, err := r.tr.RecvMessage(wctx)
	return m, stalledError(wctx, err, peer, self)
}

// stallLimit is how long nothing may move between HELLO and LOADED:
// StallTimeout, and at least SwitchoverTimeout (recvWatched says why).
func (r *receiver) stallLimit() time.Duration {
	return max(r.opt.StallTimeout, r.opt.SwitchoverTimeout)
}

// wireBytes is the current session's byte count, for a stall watch
// (watchCounting, which asks from its own goroutine under its context):
// a call that fails is no progress; a slow one is waited for, so that a
// plugin that answers late is not taken for stopped (selfStopped).
func (r *receiver) wireBytes(ctx context.Context) (uint64, error) {
	st, err := r.tr.Stats(ctx)
	return st.BytesWire, err
}

// first reads a freshly opened session's first message, HELLO or (a
// post-copy reconnect) RESUME. A source sends it right after its Open
// returns, so a session that says nothing for a while is not one to wait
// on: a source that lost its connection (or stopped) after the
// transport's handshake, or a peer that holds the credentials and means
// to keep this destination busy. Waiting on it until ctx ends would keep
// the source's next try out (a transport opens one session at a time),
// and in post-copy the guest running here would wait with it. Such a
// session fails with errSilentSession after SwitchoverTimeout, doubled
// for each silent session in a row before it (quietBound: a source that
// is only slow gets through on a later try); the caller closes it and
// waits for another (waitAgain, pcRecv.reconnect).
//
// In the first wait the bound also ends where incoming_timeout does, so
// that silent sessions in a row keep the destination no longer than
// that; a session that opened just before still gets SwitchoverTimeout.
func (r *receiver) first(ctx context.Context) (transport.Message, error) {
	bound := quietBound(r.opt.SwitchoverTimeout, r.quiet)
	if r.opt.IncomingTimeout > 0 && r.ho.get() == HandoverWaiting {
		left := time.Until(r.start.Add(r.opt.IncomingTimeout))
		bound = min(bound, max(left, r.opt.SwitchoverTimeout))
	}
	fctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	m, err := r.tr.RecvMessage(fctx)
	switch {
	case err == nil:
		r.quiet = 0
	case ctx.Err() == nil && errors.Is(err, transport.ErrClosed) && r.ho.get() == HandoverWaiting:
		return m, fmt.Errorf("%w: %w", errEndedFirst, err)
	case ctx.Err() == nil && fctx.Err() == context.DeadlineExceeded:
		r.quiet++
		return m, fmt.Errorf("%w: the session opened, then its peer sent nothing for %v (switchover_timeout %v, doubled "+
			"for each silent session in a row; the next one gets %v): %w", errSilentSession, bound, r.opt.SwitchoverTimeout,
			quietBound(r.opt.SwitchoverTimeout, r.quiet), err)
	}
	return m, err
}

// hello checks the source's layout and answers READY.
func (r *receiver) hello(ctx context.Context, payload []byte) error {
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	if id := r.opt.MigrationID; id != "" && h.Tag != tagFor(id) {
		return fmt.Errorf("%w: this destination takes migration %q; the source that connected runs another migration, "+
			"or none named (its credentials are trusted here: a job whose destination address is another job's?)",
			errOtherMigration, id)
	}
	if err := r.layout.Same(h.layout()); err != nil {
		return fmt.Errorf("the source's RAM layout does not match this VM's: %w "+
			"(start the destination with the same memory size as the source)", err)
	}
	if err := r.ho.move(HandoverReceiving); err != nil {
		return err
	}
	r.tag, r.tagPrint = h.Tag, h.Tag.fingerprint()
	r.checkPromised = h.Flags&helloCheck != 0
	if h.Flags&helloTransportTag != 0 {
		// A post-copy reconnect takes only this migration's source. An
		// older source's transport names no tag (TCP wire version 1):
		// its reconnect must not be refused, RESUME's tag decides.
		r.openReq.Tag = transport.Tag(h.Tag)
	}
	r.mode = ModePrecopy
	r.setPhase(PhaseBulk)
	var flags uint32
	var why string
	if h.Flags&helloMaySwitch != 0 {
		if why = r.postcopyWhyNot(); why == "" {
			flags = readyPostcopy
			// Arm the landed lane before READY: the source sends pages
			// only after it, and a post-copy page can only be fed to the
			// fault service if the transport records it (from the first
			// Landed call of the session on). Pre-copy's runs are
			// discarded (the source's Flush covers them); at POSTCOPY
			// the lane is drained and then feeds the service.
			r.pc = newPCRecv(ctx, r)
			r.pc.startSession(ctx, false)
		} else {
			r.opt.Log.Warn("the source may switch to post-copy, but this destination cannot serve it", "why", why)
		}
	}
	// Bounded as the source's wait for it is (a transport plugin that
	// stopped, this side's or the source's it waits on, keeps the send
	// from returning); a READY later than that finds no source waiting.
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := r.tr.SendMessage(hctx, transport.Message{Kind: msgReady, Payload: encodeReady(flags, why)}); err != nil {
		if hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("not sent within %v (this side's transport plugin or the source stopped?): %w", handshakeTimeout, err)
		}
		return fmt.Errorf("send READY: %w", err)
	}
	return nil
}

// commit runs the VM and answers RUNNING. If the VM will not resume, or
// the caller cancelled before it did, or the page check refuses the
// COMMIT (commitRefused, in either mode), the migration fails here (and
// the source, told by ABORT, resumes). In post-copy that ABORT lingers
// (pcRecv.refuseCommit, pcRecv.commit: abortCommit): a source that
// missed it reconnects with RESUME and is answered ABORT again. In
// pre-copy it is sent once (giveUp), on purpose: a pre-copy source whose
// answer to COMMIT is lost does not reconnect (sender.commit: it ends
// handover-unknown at once, its VM paused), so nobody would come to
// hear it again; migrate -resolve then finds this side failed and
// resumes the source. A lost RUNNING is the source's problem to
// resolve: the VM runs here.
func (r *receiver) commit(ctx context.Context) error {
	if err := r.commitRefused(); err != nil {
		if r.pc != nil && r.pc.on {
			return r.pc.refuseCommit(err) // told under Receive's context, not ctx (the loop's)
		}
		return err // giveUp: failed, ABORT
	}
	if r.pc != nil && r.pc.on {
		return r.pc.commit(ctx)
	}
	if !r.held.hold(false) { // from here the VM runs here: a Cancel says so (hold.go)
		return fmt.Errorf("cancelled as COMMIT arrived, before the VM ran here: %w", r.held.Err()) // giveUp: ABORT
	}
	if err := r.dst.Resume(); err != nil {
		return fmt.Errorf("resume the migrated VM: %w", err) // giveUp: failed, ABORT
	}
	if err := r.ho.move(HandoverRunning); err != nil {
		return err
	}
	// The VM runs here: the source must hear it (a cancel after the hold
	// is ignored).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.SwitchoverTimeout)
	defer cancel()
	if err := r.tr.SendMessage(sctx, transport.Message{Kind: msgRunning}); err != nil {
		r.opt.Log.Warn("the VM runs here, but RUNNING did not reach the source; it stays paused until resolved", "err", err)
	}
	return nil
}

// stateChunk collects the state blob; when complete it loads it and
// answers LOADED.
func (r *receiver) stateChunk(ctx context.Context, payload []byte) error {
	total, off, data, err := decodeStateChunk(payload)
	if err != nil {
		return err
	}
	if r.state == nil {
		r.state = make([]byte, total)
		r.setPhase(PhaseState)
	}
	if uint64(len(r.state)) != total || off != r.stateGot {
		return fmt.Errorf("%w: STATE chunk at %d of %d, expected %d of %d", errMalformed, off, total, r.stateGot, len(r.state))
	}
	copy(r.state[off:], data)
	r.stateGot += uint64(len(data))
	if r.stateGot < total {
		return nil
	}
	load := r.dst.LoadState
	if r.pc != nil && r.pc.on {
		load = r.pc.loadState // it may fault on pages only the source holds
	}
	if err := load(ctx, r.state); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if ctx.Err() != nil {
		// Cancelled, or post-copy's goroutines failed (errPostcopySetup):
		// the cause says which, and the report's status follows it.
		return fmt.Errorf("ended before LOADED: %w", context.Cause(ctx)) // giveUp: ABORT
	}
	// From the first byte of LOADED on, the source may commit. The
	// caller hears of it first.
	if err := r.ho.move(HandoverLoaded); err != nil {
		return err
	}
	r.progress()
	// Not cut short by a cancel: a LOADED half sent would leave the
	// handover unknown; a cancel is acted on after it (loop).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.SwitchoverTimeout)
	defer cancel()
	if err := r.tr.SendMessage(sctx, transport.Message{Kind: msgLoaded}); err != nil {
		// Part of it may have reached the source, which then commits
		// (without the page check): as after a break once LOADED went
		// out. In post-copy such a source, its COMMIT lost, reconnects
		// with RESUME: listen for it first (pcRecv.uncommitted). Until
		// 2026-12-07 this side ended handover-unknown at once, and that
		// source reconnected to nobody and ended handover-unknown too
		// (TestPostcopyLoadedLost).
		return r.lostAfterLoaded(ctx, fmt.Errorf("send LOADED: %w", err))
	}
	return nil
}

// hashes checks a chunk of the source's page hashes; after the last one
// it answers VERIFIED. The send is under the stall rule of the wait
// between HELLO and LOADED (recvWatched: nothing sent, no byte moving
// for StallTimeout, and at least SwitchoverTimeout): a transport plugin
// that stopped, this side's or the source's it waits on, keeps it from
// returning, and the source waits for it at least that long
// (sender.verifyWait). A send that fails leaves the handover unknown:
// part of VERIFIED may have reached the source, which then commits,
// and beside a source whose VMM died this copy is the only one (as
// after a LOADED that did not get out). In post-copy such a source,
// its COMMIT lost with the stream, reconnects with RESUME (recommit):
// this side listens for it first and answers ABORT (pcRecv.uncommitted,
// as loop does for a break once VERIFIED's send began); without a
// RESUME within reconnect_timeout the handover is unknown. Until
// 2026-12-07 it was unknown at once, and the source that committed
// reconnected to nobody and ended handover-unknown too
// (TestPostcopyVerifiedLost). It fails the migration
// instead (giveUp: ABORT; a source that still got VERIFIED hears it at
// its COMMIT, and resumes) when the verdict counts differing pages,
// which the source never commits on, or when the caller's cancel cut
// the send. What it cannot tell: a send cut by a stall while the
// caller cancelled too is taken for the cancel.
//
// A HASHES after the last (the check completed, VERIFIED went out) is
// refused (checker.chunk: errMalformed), never answered with a second
// VERIFIED: the source that sent it broke the protocol, and it cannot
// have written COMMIT before it (the stream keeps its order), so this
// side fails and says so (giveUp: ABORT), in either mode; a source that
// commits after it reads that ABORT at its COMMIT and resumes the VM,
// one that does not (its session broke) ends handover-unknown beside a
// failed destination, which migrate resolves by resuming it. Until
// 2026-12-07 an empty one was answered with VERIFIED again, which such a
// source read in place of RUNNING (TestHashesAfterVerified).
func (r *receiver) hashes(ctx context.Context, payload []byte) error {
	if r.check == nil {
		c, err := newChecker(r.layout)
		if err != nil {
			return err
		}
		if r.pc != nil && r.pc.on {
			c.deferred = r.pc.check.deferHash // absent pages: compared when they land
		}
		r.check = c
	}
	done, err := r.check.chunk(payload)
	if err != nil || !done {
		return err
	}
	r.stall.limit = r.stallLimit()
	wctx, stop := r.stall.watchCounting(ctx, r.wireBytes)
	err = r.tr.SendMessage(wctx, transport.Message{Kind: msgVerified, Payload: r.check.verdict()})
	err = stalledError(wctx, err, "VERIFIED did not get out: nothing moved (the source, or its transport plugin, "+
		"stopped reading)",
		"VERIFIED did not get out, and this side's transport plugin stopped answering (its last Stats call: %v): "+
			"it, not the source, is likely what stopped")
	// Ended here, not deferred: it watches the send alone, and must not
	// ask a closed transport for Stats through uncommitted's listening
	// (TestVerifiedLostWatchStopped).
	stop()
	if err != nil {
		err = fmt.Errorf("send VERIFIED: %w", err)
		if r.check.bad > 0 {
			return err // a verdict the source never commits on: failed (giveUp: ABORT)
		}
		if r.held.Err() != nil {
			// The caller's cancel, not a stall, cut the send: as a cancel
			// anywhere after LOADED (loop), this side will not run the
			// VM and says so (giveUp: ABORT); a source that still got
			// VERIFIED hears it at its COMMIT, and resumes.
			return fmt.Errorf("cancelled after LOADED, before COMMIT: this destination will not run the VM: %w", err)
		}
		// Part of it may have reached the source, which then commits:
		// as after a LOADED that did not get out, this side holds a
		// copy that may be the only one (the source's VMM may have
		// died): unknown, never discarded by a timer. In post-copy a
		// source that committed reconnects with RESUME: listen for it
		// first, as after any break once VERIFIED's send began
		// (lostAfterLoaded: the check is no longer open).
		return r.lostAfterLoaded(ctx, err)
	}
	return nil
}
