package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// The destination's state machine: its state is its Handover (ho), what
// it takes in each state is receiverAccepts (messages.go), and how it
// ends a failed migration follows from the state (giveUp).

// receiver is one incoming migration. Its state is ho: what may arrive
// next is receiverAccepts[ho] (messages.go), and whether to tell the
// source when it fails is ho too (giveUp).
type receiver struct {
	tr       transport.Transport
	dst      framework.Target
	layout   framework.Layout
	tag      migrationTag // from the source's HELLO: its RESUMEs must carry it
	tagPrint string       // tag's fingerprint once HELLO was taken (Report.TagFingerprint); "" before
	opt      Options
	start    time.Time
	phase    Phase
	state    []byte
	stateGot uint64
	held     *heldCtx // Receive's context: cancellable until it acts on COMMIT (hold.go)
	check    *checker // page-exact check in progress
	ho       handoverState
	clock    phaseClock // where the time goes (timing.go)
	openReq  transport.OpenRequest
	mode     string                  // Report.Mode once the handshake ran
	pc       *pcRecv                 // post-copy, when READY said this side can serve one (postcopy_recv.go)
	stopLoop context.CancelCauseFunc // ends loop's wait with a cause (post-copy's goroutines failing before COMMIT)
	// checkPromised: HELLO said the source runs the page check
	// (helloCheck), so it writes COMMIT only after VERIFIED (checkOpen).
	checkPromised bool
	// The traffic of sessions closed before the current one (post-copy's
	// reconnects), and the current session's as last seen (seen): a
	// transport whose plugin died cannot answer Stats any more.
	wireBase, seen transport.Stats
	// closed: closeSession counted the last session in wireBase, or
	// waitAgain in refusedWire, and no Open succeeded since, so the
	// transport's Stats (the closed session's totals) are not asked
	// again (openSession).
	closed bool
	// emptyAtStart says, per region, whether guest RAM held no data when
	// Receive started (a fresh destination's): waitAgain then sees what
	// a refused session wrote there in the RAM file itself.
	emptyAtStart []bool
	refused      int        // sessions of another migration waitAgain refused
	refusedWire  uint64     // bytes of every session waitAgain closed (Report.BytesWireRefused)
	silent       int        // sessions waitAgain closed for saying nothing (first)
	ended        int        // sessions that ended before their first message, waited past
	quiet        int        // fresh sessions in a row that said nothing (first, quietBound)
	stall        stallWatch // between HELLO and LOADED (recvWatched), the page check's HASHES (recvHashes) and VERIFIED's send (hashes)
	// ending is the last word a post-copy that ended here tells the
	// source (msgSettled, msgBroken; msgAbort after a Resume at COMMIT
	// that failed, the hold taken: pcRecv.commit), 0 before: set as it
	// ends, before Postcopy(nil) or Halt (from which a VMM learns the
	// end; after a failed Resume, Postcopy(nil) comes only once the
	// telling is over), read by cancelAfterHold on the cancel's goroutine.
	ending atomic.Uint32
}

// cancelAfterHold logs a cancel of Receive's context that came after the
// hold (heldCtx's ignored). Once post-copy ended here (ending), the
// cancel is acted on: it ends the wait to tell the source how it ended
// (tellSettled, tellBroken: heldCtx.caller), the reference VMM's way to
// cut that wait short (vmm/linger.go), and nothing else. Before, it is
// ignored; it will still end that wait, at once, when post-copy ends.
func (r *receiver) cancelAfterHold(cause error) {
	if last := r.ending.Load(); last != 0 {
		r.opt.Log.Info("cancel: post-copy ended here; the cancel ends the wait to tell the source so ("+msgName(last)+
			"), and nothing else: the migration ends as it did", "cause", cause)
		return
	}
	r.opt.Log.Warn("cancel ignored: COMMIT arrived and the guest runs here; in post-copy it still needs pages "+
		"from the source, and the migration ends when they all arrived or the connection stayed broken for "+
		"reconnect_timeout (once post-copy ended, the cancel ends only the wait to tell the source how)", "cause", cause)
}

// newReceiver is a receiver waiting for its source; opt has its defaults.
func newReceiver(dst framework.Target, tr transport.Transport, opt Options) *receiver {
	r := &receiver{tr: tr, dst: dst, layout: dst.RAM(), opt: opt, start: time.Now(), phase: PhaseWaiting}
	r.ho.h = HandoverWaiting
	r.held = holdable(context.Background(), func(error) {}) // Receive sets the caller's
	r.clock = newPhaseClock(r.phase, r.start)
	return r
}

// setPhase moves to phase p along phaseNext and tells the caller.
func (r *receiver) setPhase(p Phase) {
	next, err := nextPhase(r.phase, p)
	if err != nil {
		r.opt.Log.Error("progress", "err", err)
	}
	if next != r.phase {
		r.phase = next
		r.clock.enter(next, time.Now())
		r.progress()
	}
}

func (r *receiver) progress() { r.progressWith(0) }

// progressWith reports the phase, remaining pages to arrive, and the
// traffic of every session so far as last polled (a post-copy reconnect
// does not restart it).
func (r *receiver) progressWith(remaining uint64) { r.opt.Progress(r.progressAt(remaining)) }

// progressAt is the Progress progressWith reports.
func (r *receiver) progressAt(remaining uint64) Progress {
	st := addStats(r.wireBase, r.seen)
	return Progress{Phase: r.phase, Remaining: remaining, TotalPages: r.layout.Pages(),
		BytesWire: st.BytesWire, PagesSent: st.PagesData, PagesZero: st.PagesZero,
		Elapsed: time.Since(r.start), Handover: r.ho.get(), Mode: r.mode, TagFingerprint: r.tagPrint}
}

// unknown records that the source may or may not have committed: the VM
// stays paused here.
func (r *receiver) unknown(cause error) error {
	if err := r.ho.move(HandoverUnknown); err != nil {
		return err
	}
	r.opt.Log.Error("handover unknown: the VM stays paused here until resolved", "err", cause)
	if r.pc != nil && r.pc.on && r.pc.svc != nil && r.pc.svc.Pending() > 0 {
		// The VM never ran here, and this side lacks the absent pages:
		// only the source can resume it.
		r.opt.Log.Error("post-copy: this destination lacks pages the source holds and never ran the VM; "+
			"it must not be resumed: resolve by resuming the source", "pages_missing", r.pc.svc.Pending())
	}
	return fmt.Errorf("%w (after LOADED, no COMMIT: %v)", ErrHandoverUnknown, cause)
}

// fail moves to HandoverFailed and reports it at once (Progress): from
// here this side never runs the VM, and a caller may act on that while
// Receive still runs, as it does while it tells the source (giveUp's
// ABORT, and the post-copy ABORT that lingers for minutes:
// pcRecv.uncommitted). Every caller moves here before any Resume, or
// after a Resume that failed (the VM did not run), never after one that
// ran it: Failed is final and follows only waiting, receiving and
// loaded (handoverNext). The other final states are reported when
// Receive returns, not at their move: running and handover-unknown end
// it at once, and a VMM takes a receive-side postcopy-broken in its
// progress for a migration it may cancel (vmm migration.incoming).
func (r *receiver) fail() error {
	if err := r.ho.move(HandoverFailed); err != nil {
		return err
	}
	remaining := uint64(0)
	if r.pc != nil && r.pc.on && r.pc.svc != nil {
		remaining = r.pc.svc.Pending()
	}
	r.progressWith(remaining)
	return nil
}

// handle applies one message from the source. It reports done once the
// VM runs; an error ends the migration (the caller tells the source).
func (r *receiver) handle(ctx context.Context, m transport.Message) (bool, error) {
	if m.Kind == msgResume && r.ho.get() == HandoverWaiting {
		return false, fmt.Errorf("%w: a source resumes a post-copy this destination never took part in "+
			"(was the destination VMM that ran it restarted?)", errForeignResume)
	}
	if h := r.ho.get(); !receiverTakes(h, m.Kind) {
		return false, fmt.Errorf("%w: unexpected %s in handover state %s", errMalformed, msgName(m.Kind), h)
	}
	switch m.Kind {
	case msgAbort:
		// The source will not commit: failed, and nothing to tell it.
		if err := r.fail(); err != nil {
			return false, err
		}
		return false, fmt.Errorf("source aborted the migration: %s", m.Payload)
	case msgHello:
		return false, r.hello(ctx, m.Payload)
	case msgPostcopy:
		return false, r.postcopyChunk(ctx, m.Payload)
	case msgState:
		return false, r.stateChunk(ctx, m.Payload)
	case msgHashes:
		return false, r.hashes(ctx, m.Payload)
	case msgCommit:
		return true, r.commit(ctx)
	}
	return false, fmt.Errorf("engine bug: %s is in receiverAccepts but not handled", msgName(m.Kind))
}

// giveUp ends a failed migration: from a state that is not final, this
// side fails and tells the source (ABORT), which may then resume. A
// final state already says what happened: failed on the source's ABORT
// (nothing to tell), or handover-unknown (the source may have
// committed: never ABORT). A RESUME from a source this receiver never
// met is not answered at all (errForeignResume), nor is anything sent
// through this side's own plugin once it stopped answering
// (selfStopped): the source learns of the end when the stopped process
// is killed and its connection closes.
func (r *receiver) giveUp(cause error) {
	if h := r.ho.get(); h.Final() || h == HandoverPostcopy {
		return // post-copy ends running or broken, never with ABORT (postcopy_recv.go)
	}
	if err := r.fail(); err != nil {
		r.opt.Log.Error("give up", "err", err)
	}
	if errors.Is(cause, errForeignResume) || selfStopped(cause) { // a stopped plugin carries nothing
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: abortReason(cause)})
}

// abortReason is ABORT's payload for a migration that failed with cause.
// Another migration's source learns nothing of this destination beyond
// the refusal (transport.Transport, "Migration tag"): not its migration
// ID, from which its tag is made, which cause names for this side's log.
func abortReason(cause error) []byte {
	if errors.Is(cause, errOtherMigration) {
		return []byte(otherMigrationReason)
	}
	return reason(cause)
}

// otherMigrationReason is all another migration's source is told.
const otherMigrationReason = "HELLO of another migration: this destination waits for another migration's source, " +
	"or its HELLO named none (the source's credentials are trusted there: is this job's destination address another job's?)"

// errForeignResume: the first message on a new connection was RESUME,
// so its source is in post-copy's handover with another destination (one
// whose process died and was started again at the same address, with the
// job's credentials); or, after this side's own stream broke, a RESUME
// with another migration's tag (checkResume), which is never answered
// either: MISSING, SETTLED, BROKEN or ABORT would each tell that source
// something of a guest it does not hold. ABORT would tell that source
// "the VM never ran here, resume it", which only the destination that missed COMMIT may
// say (pcRecv.uncommitted): the one that got it may have run the guest
// before it died, and resuming the source would run an older copy. So
// nothing is answered; the source keeps the VM paused and ends
// handover-unknown after its reconnect_timeout.
var errForeignResume = errors.New("RESUME from a stranger to this migration")

// errOtherMigration: the source's HELLO carries the tag of another
// migration than Options.MigrationID (migrationTag, tagFor).
var errOtherMigration = errors.New("HELLO of another migration")

// waitAgain decides what a waiting destination does when the first
// message of a session was another migration's: a HELLO with another
// tag (errOtherMigration) or a RESUME (errForeignResume). A transport
// that keeps the migration tag rule (transport.Transport, "Migration
// tag") never opens such a session when it knows the tag; one that does
// not (a third party's, or any transport before the ID is known) may.
// Nothing was taken from that source, so this destination need not
// fail: it tells a HELLO's source why (ABORT; that source paused
// nothing), answers a RESUME nothing (errForeignResume), closes the
// session keeping its port, and reports true: Receive opens the
// transport again within what is left of IncomingTimeout. It reports
// false, and the migration fails as before, in any other state, and when
// that session wrote pages into guest RAM, or its transport cannot say
// (its Stats after Close fail: a launched plugin closed while stopped,
// hung or gone, whose last counters seen may fall short, transport.Launch):
// this guest's RAM may then hold another's bytes, and only a fresh
// destination is clean. Written means: its Stats after Close count a
// page, or a region of guest RAM that held no data when Receive started
// (a fresh destination's) holds some now, in the RAM file itself
// (SEEK_DATA), whatever the transport's Stats say. What it cannot see: a
// write into a region that held data already (a VMM that wrote guest
// RAM before Receive), through a transport whose Stats do not count it.
//
// A session that sent nothing at all (errSilentSession, first) is
// treated the same way: told why (silentReason: a source that was only
// slow, which paused nothing yet, reads it even if its HELLO could no
// longer be sent, sender.refusal, and fails saying to run the migration
// again), closed, and waited past if it wrote nothing. So is a session
// that ended before its first message (errEndedFirst: its peer closed
// it, a source that died right after connecting; nobody to tell).
func (r *receiver) waitAgain(cause error) bool {
	silent := errors.Is(cause, errSilentSession)
	ended := errors.Is(cause, errEndedFirst)
	if r.ho.get() != HandoverWaiting || !silent && !ended && !errors.Is(cause, errOtherMigration) && !errors.Is(cause, errForeignResume) {
		return false
	}
	if silent || errors.Is(cause, errOtherMigration) {
		why := abortReason(cause)
		if silent {
			why = r.silentReason()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = r.tr.SendMessage(ctx, transport.Message{Kind: msgAbort, Payload: why})
		cancel()
	}
	transport.CloseHolding(r.tr)
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	st, err := r.tr.Stats(ctx)
	cancel()
	// Its bytes are not this migration's: counted apart, whether this
	// side waits on or fails (st is the last seen when Stats failed),
	// and never in BytesWire: the report asks the transport nothing
	// more until a session opens (closed), whose Stats would be this
	// closed session's totals again.
	r.refusedWire += st.BytesWire
	r.seen, r.closed = transport.Stats{}, true
	filled := filledSince(r.layout, r.emptyAtStart)
	if err != nil || st.PagesData+st.PagesZero != 0 || filled {
		r.opt.Log.Error("a session that was not this migration's source's was refused, but it may have written guest RAM: "+
			"this destination fails (start a fresh one)", "cause", cause, "pages", st.PagesData+st.PagesZero, "stats_err", err,
			"ram_file_written", filled)
		return false
	}
	if ended {
		r.ended++
		r.opt.Log.Warn("a session ended before its HELLO; waiting on for this migration's source", "cause", cause)
		return true
	}
	if silent {
		r.silent++
		r.opt.Log.Warn("closed a session that sent no HELLO; waiting on for this migration's source", "cause", cause,
			"next_session_gets", quietBound(r.opt.SwitchoverTimeout, r.quiet))
		return true
	}
	r.refused++
	r.opt.Log.Warn("refused a source of another migration; waiting on for this migration's source", "cause", cause)
	return true
}

// errEndedFirst: a freshly opened session ended (its peer closed it)
// before its first message, while this destination waits for its source
// (receiver.first).
var errEndedFirst = errors.New("session ended before its first message")

// errSilentSession: a freshly opened session sent no first message
// within SwitchoverTimeout, doubled for each such session in a row
// (receiver.first, quietBound).
var errSilentSession = errors.New("silent session")

// silentReason is ABORT's payload for a session first closed as silent
// while this destination waits for its source: what a source that was
// only slow (not dead) shows its operator, and what to do.
func (r *receiver) silentReason() []byte {
	s := r.opt.SwitchoverTimeout
	return fmt.Appendf(nil, "this destination heard no HELLO within %v of the session opening (switchover_timeout %v, "+
		"doubled for each silent session in a row) and closed it; it waits on for this migration's source within "+
		"incoming_timeout, and gives the next session %v: run the migration again (if this source is always that slow "+
		"to start, its transport's Open returning late, raise switchover_timeout)", quietBound(s, r.quiet-1), s, quietBound(s, r.quiet))
}

// send sends m within SwitchoverTimeout (and ctx).
func (r *receiver) send(ctx context.Context, m transport.Message) error {
	sctx, cancel := context.WithTimeout(ctx, r.opt.SwitchoverTimeout)
	defer cancel()
	return r.tr.SendMessage(sctx, m)
}

// pollStats asks the transport for the current session's traffic and
// keeps the answer (seen); a failed call keeps the previous one. After
// closeSession, until an Open succeeds, there is no current session: it
// asks nothing (a closed transport reports the session closeSession
// already counted).
func (r *receiver) pollStats() transport.Stats {
	if r.closed {
		return r.seen
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	if st, err := r.tr.Stats(ctx); err == nil {
		r.seen = st
	}
	return r.seen
}

// closeSession closes the transport's session and counts its traffic in
// wireBase (post-copy: a broken connection opens a new one). The session
// ends here, not at the next Open: one this side took for dead while its
// connection is up (a stall, a failed call, a malformed message) breaks
// now for the source, which reconnects instead of waiting for its own
// stall bound, and its old landed lane ends with it. A transport that
// holds its listening port (transport.ListenerHolder) keeps it for that
// next Open, so no one else on the host can take it meanwhile; Receive's
// Close at the end lets it go. A wrapper that neither forwards
// CloseHoldingListeners nor closes in Close (framework/session's
// forwards it) would leave the session running until its next Open.
//
// Its traffic is its totals after the close (endSession), which count
// the pages in flight that the close finished writing; the counters
// polled just before stand when the transport cannot vouch for those.
// With no session since the last close (an Open that failed) it counts
// nothing: the transport's Stats may still be the last session's.
func (r *receiver) closeSession() {
	if r.closed {
		transport.CloseHolding(r.tr) // a launched plugin may run a process for the failed Open
		return
	}
	r.wireBase = addStats(r.wireBase, endSession(r.tr, r.pollStats()))
	r.seen, r.closed = transport.Stats{}, true
}

// openSession opens the transport for a next session (openTransport).
// Once it opened, the transport's Stats are that session's. After an
// Open that failed they may still be the last session's (a transport
// keeps them until a session opens, as loopback does): nothing is asked
// then, and what a failed Open moved (a refused handshake) is not
// counted.
func (r *receiver) openSession(ctx context.Context, req transport.OpenRequest, rep *Report) error {
	err := openTransport(ctx, r.tr, req, rep)
	r.closed = err != nil
	return err
}

// addStats is a + b, counter by counter.
func addStats(a, b transport.Stats) transport.Stats {
	return transport.Stats{BytesWire: a.BytesWire + b.BytesWire, PagesData: a.PagesData + b.PagesData,
		PagesZero: a.PagesZero + b.PagesZero, Compressed: a.Compressed + b.Compressed}
}
