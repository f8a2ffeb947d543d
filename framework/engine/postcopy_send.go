package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// The source's side of post-copy (postcopy.go draws the exchange).
//
//	live passes ─► switch? (postcopyWhy: mode, operator, convergence)
//	pause ─► final sync ─► owed = pages the passes still owed ∪ dirtied since
//	  owed, classified without the guest running:
//	    hinted / hole / zero ─► KindZero runs now (SendPages, Flush): faults there stay local
//	    the rest             ─► absent: POSTCOPY run list; the owed bitmap of post-copy
//	serve REQUESTs (own goroutine, urgent path; the transport itself once
//	  armed, transport.Answerer) ─► STATE ─► LOADED ─► [HASHES/VERIFIED] ─► COMMIT ─► RUNNING
//	push the rest in the background (main goroutine, SendPages of pushFlushBytes, each Flushed)
//	owed empty ─► Flush ─► SETTLED: completed (differences: a loud error, never a resume here)
//	broken connection ─► Close, Open again (backoff, ReconnectTimeout) ─► RESUME ─► MISSING: owed again
//
// Exactly once: every absent page is queued once, on whichever path
// takes it first from the owed set (transport.Owed: an atomic and-not on
// its bit, shared with a transport that answers requests itself, in its
// plugin process too); a REQUEST for a page no longer owed is not
// answered again (the fault waits for the queued copy). A page is owed
// again only when the destination lists it in MISSING after a
// reconnect: that copy never landed.

const (
	// postcopyStall: in mode "auto", this many passes in a row whose
	// estimated downtime did not fall by a tenth mean pre-copy will not
	// converge (a random writer's dirty set shrinks a little each pass
	// without ever converging: BenchmarkPostcopyNonConverging).
	// Fewer would switch on one noisy measurement; more would keep
	// sending the same hot pages (each stalled pass costs a pass of
	// bandwidth).
	postcopyStall = 3

	// pushFlushBytes: the background pusher sends batches of this many
	// bytes (pushBatchPages) and Flushes after each, so at most that much
	// is queued and not written when a fault finds its page already
	// queued in bulk: it waits for at most pushFlushBytes to drain (1.7
	// ms at 10 Gbit/s). BenchmarkPushFlush on loopback (2 cores, load
	// 7): Flushing every 2 MiB keeps the unflushed rate (2.4-2.7 GB/s);
	// every 1 MiB lost up to half of it (1.3-2.3 GB/s), 256 KiB 1.2-1.4
	// GB/s; 4 and 8 MiB gained nothing measurable but double the wait.
	pushFlushBytes = 2 << 20
	pushBatchPages = pushFlushBytes / framework.PageSize

	// zeroCheckPages: at the switch, owed sets up to this many pages are
	// classified with the zero check (every populated page read while
	// the VM is paused); larger ones only by hints and holes, and their
	// zero pages go as zero runs when pushed or asked for (a fault on one
	// of those then costs a round trip). BenchmarkOwedClassify, 256 MiB,
	// 2 cores under load: with the check 234-428 ns per data page and
	// 280-778 ns per populated zero page, without it 89-193 and 45 ns
	// (SEEK_HOLE walks the memfd's pages). 32 Ki pages (128 MiB) thus
	// add at most about 25 ms to the pause.
	zeroCheckDefault = 32 << 10

	// Reconnect backoff after post-copy broke: the first retry after
	// reconnectMin, doubling up to reconnectMax.
	reconnectMin = 50 * time.Millisecond
	reconnectMax = 2 * time.Second
)

// zeroCheckPages is zeroCheckDefault; a variable for tests.
var zeroCheckPages uint64 = zeroCheckDefault

// maySwitch reports whether this migration may switch to post-copy, so
// HELLO asks the destination whether it can.
func (s *sender) maySwitch() bool {
	return s.opt.Postcopy == PostcopyAuto || s.opt.Postcopy == PostcopyAlways || s.opt.StartPostcopy != nil
}

// switchAsked reports whether the operator asked for post-copy
// (StartPostcopy received or closed) and the destination can serve it.
// It fires once; a request the destination cannot serve is logged and
// pre-copy goes on.
func (s *sender) switchAsked() bool {
	if s.opt.StartPostcopy == nil || s.pcAsked {
		return false
	}
	select {
	case <-s.opt.StartPostcopy:
	default:
		return false
	}
	s.pcAsked = true
	if !s.pcReady {
		s.opt.Log.Warn("post-copy was asked for, but the destination cannot serve it (see READY): pre-copy goes on")
		return false
	}
	return true
}

// postcopyWhy decides after a live pass whether to switch to post-copy
// and says why ("" to go on as pre-copy). sent is the data pages the
// pass sent, dirtied the pages the guest wrote meanwhile; of those, the
// pages expected to carry data (dataOf at finalFree, as the estimate
// charges them) are set against sent: zero pages and holes cost the
// link almost nothing, and a guest that zeroes many pages (init_on_free)
// is no reason to switch.
func (s *sender) postcopyWhy(sent, dirtied uint64) string {
	if s.switchAsked() {
		return fmt.Sprintf("the operator asked (StartPostcopy) after pass %d", s.pass)
	}
	if !s.pcReady {
		return ""
	}
	switch s.opt.Postcopy {
	case PostcopyAlways:
		return fmt.Sprintf("postcopy = %q: after the bulk pass", PostcopyAlways)
	case PostcopyAuto:
		if s.estimate <= s.opt.MaxDowntime {
			return "" // pre-copy converged
		}
		switch {
		case s.pass >= s.opt.MaxPasses:
			return fmt.Sprintf("max_passes (%d) reached with the estimated downtime %v above max_downtime %v",
				s.opt.MaxPasses, s.estimate, s.opt.MaxDowntime)
		case s.pcStalls >= postcopyStall:
			return fmt.Sprintf("the estimated downtime (%v) has not fallen by a tenth for %d passes", s.estimate, s.pcStalls)
		// The bulk pass's length is the guest's size, not a rate: from
		// the first dirty pass on, a pass that saw more pages dirtied
		// that carry data than it sent means the guest dirties faster
		// than the link moves.
		case s.pass > 1 && dataOf(dirtied, s.finalFree) > sent:
			return fmt.Sprintf("the guest dirtied %d pages (%d of them expected to carry data) during pass %d, which sent %d: it dirties faster than the link moves",
				dirtied, dataOf(dirtied, s.finalFree), s.pass, sent)
		}
	}
	return ""
}

// pcSend is the source's state from the switch on. The owed set is
// shared by the main goroutine (pusher), the request server and a
// transport that answers requests itself (transport.Answerer); the
// engine's own counters are under mu.
type pcSend struct {
	s     *sender
	pages uint64
	stall stallWatch // progress of the current session (run)

	// owed: the absent pages nobody has queued yet, a new set for each
	// transport session (renew), so that a transport session that ended
	// can take nothing from the next one's.
	owed *transport.Owed

	mu        sync.Mutex
	left      uint64               // pages owed: made owed, minus pushed and answered (owed's counts)
	pushed    pushedPages          // pages the pusher sent that MISSING did not name since
	dataPages uint64               // pages the pusher sent as data, each time it sent one
	zeroPages uint64               // and as zero runs
	answered  transport.OwedCounts // requests answered, in owed sets already renewed
	sentBase  uint64               // Report.PagesSent and PagesZero at the switch
	zeroBase  uint64

	settled   *transport.Message // SETTLED seen while pushing the last pages
	serveGone bool               // the request server's session ended with nothing owed
	// unsure: why pages taken from owed may not have reached the
	// destination although nothing is owed (a push or an answer that
	// failed, doubt); settle then waits at most unsureWait. nil: none in
	// this session.
	unsure error
	// The request server (startServing): serveStop ends its wait for
	// the next REQUEST, serveCut its answer in flight.
	serveStop, serveCut context.CancelFunc
	serveDone           chan struct{}
	serveErr            chan error // the request server's end (1 buffered)
}

func newPostcopy(s *sender, absent *bitmap.Bitmap) (*pcSend, error) {
	owed, err := transport.NewOwed(absent.Len())
	if err != nil {
		return nil, fmt.Errorf("post-copy: %w", err)
	}
	pc := &pcSend{s: s, pages: absent.Len(), owed: owed, pushed: newPushedPages(absent.Len()),
		sentBase: s.rep.PagesSent, zeroBase: s.rep.PagesZero}
	pc.stall.limit = s.opt.StallTimeout
	absent.Runs(func(first, n uint64) bool {
		pc.left += owed.Set(first, n)
		return true
	})
	return pc, nil
}

// renew moves what is owed into a new set for the next transport
// session (the old session is closed) and closes the old one.
func (pc *pcSend) renew() error {
	owed, err := transport.NewOwed(pc.pages)
	if err != nil {
		return fmt.Errorf("post-copy: %w", err)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	old := pc.owed
	pc.keepCounts()
	pc.left = 0
	for _, r := range old.Take(0, pc.pages, nil) {
		pc.left += owed.Set(r.First, r.Count)
	}
	owed.SetResume(old.Resume())
	old.Close()
	pc.owed = owed
	return nil
}

// close releases the owed set, once the transport is closed; safe on nil.
func (pc *pcSend) close() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	c := pc.keepCounts()
	// left counts the set's answers off through its counters
	// (leftLocked), which a closed set no longer has: count them off
	// here, or the pages the transport answered would read as still owed
	// (the last progress of a completed post-copy said so).
	pc.left -= min(pc.left, c.Answered)
	pc.owed.Close()
}

// keepCounts adds the answered counters of the owed set, which is
// about to be closed, to answered, and returns them (call with mu held).
func (pc *pcSend) keepCounts() transport.OwedCounts {
	c := pc.owed.Counts()
	pc.answered.Answered += c.Answered
	pc.answered.AnsweredZero += c.AnsweredZero
	pc.answered.Again += c.Again
	return c
}

// owedCount is the number of pages still owed; safe on nil.
func (pc *pcSend) owedCount() uint64 {
	if pc == nil {
		return 0
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.leftLocked()
}

func (pc *pcSend) leftLocked() uint64 {
	if a := pc.owed.Counts().Answered; a < pc.left {
		return pc.left - a
	}
	return 0
}

// take takes up to n owed pages for the pusher, from where it goes on
// (wrapping around), out of owed.
func (pc *pcSend) take(n uint64, dst []pageRun) []pageRun {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var got []transport.PageRun
	for n > 0 {
		p := pc.owed.Next(pc.owed.Resume())
		if p == pc.pages {
			break // nothing owed
		}
		w := min(n, pc.pages-p)
		got = pc.owed.Take(p, w, got[:0])
		for _, g := range got {
			dst = append(dst, pageRun{g.First, g.Count})
			pc.left -= g.Count
			pc.pushed.add(g.First, g.Count)
			n -= g.Count
		}
		pc.owed.SetResume((p + w) % pc.pages)
	}
	return dst
}

// owe makes runs owed again (MISSING after a reconnect): pushes of
// them did not land, and no longer count as pushed.
func (pc *pcSend) owe(runs []pageRun) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, r := range runs {
		pc.pushed.missing(r.First, r.Count)
		pc.left += pc.owed.Set(r.First, r.Count)
	}
	if len(runs) > 0 {
		pc.owed.SetResume(runs[0].First)
	}
}

// wire turns the pusher's runs into transport runs: a page that reads all
// zero (the source is paused: it stays so) goes as a zero run.
func (pc *pcSend) wire(runs []pageRun, dst []transport.PageRun) []transport.PageRun {
	var data, zero uint64
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			k := transport.KindData
			if isZero(pc.s.page(p)) {
				k = transport.KindZero
				zero++
			} else {
				data++
			}
			dst = appendRun(dst, p, 1, k)
		}
	}
	pc.mu.Lock()
	pc.dataPages += data
	pc.zeroPages += zero
	pc.mu.Unlock()
	return dst
}

// page is guest page p of the source.
func (s *sender) page(p uint64) []byte {
	i := len(s.base) - 1
	for s.base[i] > p {
		i--
	}
	off := (p - s.base[i]) * framework.PageSize
	return s.mem[i][off : off+framework.PageSize]
}

// startServing starts answering the destination's REQUESTs on the
// urgent path until stopServing, cutServing or the session's end. Its
// wait for the next REQUEST runs under a context stopServing ends; its
// answers under another, which only cutServing (and ctx) end.
func (pc *pcSend) startServing(ctx context.Context) {
	wait, stop := context.WithCancel(ctx)
	answers, cut := context.WithCancel(ctx)
	pc.serveStop, pc.serveCut = stop, cut
	pc.serveDone, pc.serveErr, pc.serveGone = make(chan struct{}), make(chan error, 1), false
	go pc.serve(wait, answers, pc.serveDone, pc.serveErr)
}

// stopServing ends the request server's wait for the next REQUEST and
// joins it, letting an answer in flight finish, at most answerTimeout;
// then it cuts that answer. It is for a session that goes on carrying
// messages (settle's SETTLED echo, BROKEN's, the ABORT after a failed
// switch-over): over a transport whose write, cut by its context in the
// middle, fails the whole session (tcp over TLS, rdma), cutting the
// answer lost the echo, and the destination, running the guest with
// every page, lingered for a RESUME (TestPostcopySettleKeepsAnswerInFlight).
// What it cannot do: make an answer stuck for answerTimeout go; its
// cut may still fail the session, and the echo with it. Safe on nil
// and when nothing serves.
func (pc *pcSend) stopServing() {
	if pc == nil || pc.serveStop == nil {
		return
	}
	pc.serveStop()
	t := time.NewTimer(answerTimeout)
	defer t.Stop()
	select {
	case <-pc.serveDone:
	case <-t.C:
		pc.s.opt.Log.Warn("post-copy: an answer to a page request is still being written; cutting it (the session may fail with it)",
			"after", answerTimeout)
	}
	pc.cutServing()
}

// cutServing ends the request server at once, an answer in flight too,
// and joins it: for a session that is dead or given up (reconnect,
// recommit, broken on a failed session), where waiting on an answer
// costs time and saves nothing. Safe on nil and when nothing serves.
//
// The join waits at most cutServingWait: every transport call must
// return once its context ends (transport.Transport), but a plugin that
// does not (its SendPagesUrgent holds on) would otherwise hold the
// migration with it, a paused guest's resume or a post-copy reconnect
// included. Past the bound it logs an error and goes on without the
// request server, whose goroutine is leaked, stuck in that call: it
// sends nothing more and reports nothing once the call returns (both
// its contexts ended), but the call itself may still write its pages
// into whatever session the transport has then, a later one included:
// its bytes are the source's last copy (paused from COMMIT on), so an
// owed page lands right; a destination that holds them already refuses
// a second copy (its landed lane's breach), which breaks that
// post-copy, but only after the write went over the guest's newer page
// in its RAM. That later session is reached only by an in-process
// transport (an embedding VMM's own Go Transport) that ignores its
// context (not handled): every path that opens one closes the old
// first (closeTransport, endSession), and a launched plugin's close
// kills its process, whose urgent channel and connections are its own,
// so its leaked call ends with it; and a call that
// returns without error counts once as progress for the stall watch,
// of whatever session is current by then. Before, Send waited for such
// a call for as long as the transport held it
// (TestPostcopyCutServingBounded).
func (pc *pcSend) cutServing() {
	if pc == nil || pc.serveStop == nil {
		return
	}
	pc.serveStop()
	pc.serveCut()
	t := time.NewTimer(cutServingWait)
	defer t.Stop()
	select {
	case <-pc.serveDone:
	case <-t.C:
		pc.s.opt.Log.Error("post-copy: an answer to a page request did not end when cut: the transport ignores its "+
			"context (a plugin bug); the request server is left running in that call, and the migration goes on without it",
			"after", cutServingWait)
	}
	pc.serveStop, pc.serveCut = nil, nil
}

// cutServingWait bounds cutServing's join of the request server after
// its cut: a call cut by its context returns at once.
const cutServingWait = answerTimeout

// serve answers REQUESTs: the owed pages among them go at once on the
// urgent path; the others are already queued. It waits for REQUESTs
// under wait and answers under answers (startServing); it ends when
// wait ends, once the answer in flight, if any, returned.
func (pc *pcSend) serve(wait, answers context.Context, done chan<- struct{}, errc chan<- error) {
	defer close(done)
	s := pc.s
	owed := pc.arm(wait)
	var out []transport.PageRun
	for {
		m, err := s.tr.RecvUrgent(wait)
		if err != nil {
			if wait.Err() == nil {
				errc <- linkError{fmt.Errorf("reading page requests: %w", err)}
			}
			return
		}
		if wait.Err() != nil {
			// A transport may hand over a queued REQUEST under a
			// context that ended (loopback does): stopServing joins
			// the answer in flight only, not a new one.
			return
		}
		if m.Kind != msgRequest {
			errc <- fmt.Errorf("%w: %s on the urgent path, want REQUEST", errMalformed, msgName(m.Kind))
			return
		}
		// As a transport that answers requests itself does: the owed
		// pages among them, each zero page as a zero run, counted in owed.
		if out, err = owed.Claim(m.Payload, s.page, out[:0]); err != nil {
			errc <- fmt.Errorf("page request: %w", err)
			return
		}
		if len(out) == 0 {
			continue
		}
		if err := s.tr.SendPagesUrgent(answers, out); err != nil {
			if wait.Err() == nil && answers.Err() == nil {
				errc <- linkError{fmt.Errorf("answering page requests: %w", err)}
			}
			return
		}
		pc.stall.moved()
	}
}

// arm lets a transport that answers page requests itself
// (transport.Answerer) do so from now on in this session, with the
// session's owed set, which it returns; serve answers the requests that
// came before, and all of them when the transport cannot. (The set
// changes only in renew, between sessions, while nothing serves.)
func (pc *pcSend) arm(ctx context.Context) *transport.Owed {
	pc.mu.Lock()
	owed := pc.owed
	pc.mu.Unlock()
	a, ok := pc.s.tr.(transport.Answerer)
	if !ok {
		return owed
	}
	switch err := a.Answer(ctx, msgRequest, owed); {
	case err == nil:
		pc.s.opt.Log.Info("post-copy: the transport answers page requests itself")
	case errors.Is(err, transport.ErrNotSupported) || ctx.Err() != nil:
	default:
		pc.s.opt.Log.Warn("post-copy: the transport could not answer page requests itself; the engine does", "err", err)
	}
	return owed
}

// linkError is a failure of the connection (or the transport's
// session): post-copy reconnects. Every other error after RUNNING ends
// post-copy for good.
type linkError struct{ err error }

func (e linkError) Error() string { return e.err.Error() }
func (e linkError) Unwrap() error { return e.err }

func isLink(err error) bool {
	var l linkError
	return errors.As(err, &l)
}

// switchToPostcopy pauses the VM and hands it over in post-copy: the
// zero runs and the absent list under the switch-over deadline, then the
// state and LOADED (the downtime), the page check, COMMIT and RUNNING,
// and post-copy proper. A failure before COMMIT resumes the VM here, as
// in pre-copy; after RUNNING the VM is never resumed here.
func (s *sender) switchToPostcopy(ctx context.Context) error {
	s.opt.Log.Info("switching to post-copy", "why", s.pcWhy, "pass", s.pass)
	s.rep.Mode = ModePostcopy
	if err := s.ho.move(HandoverSwitchover); err != nil {
		return err
	}
	s.setPhase(PhaseStop)
	paused, err := s.pauseAndSend(ctx, func(sctx context.Context, _ time.Time) error { return s.postcopyOut(ctx, sctx) })
	if err == nil {
		s.rep.DowntimeMS = time.Since(paused).Milliseconds() // without the page check
		if s.opt.VerifyPages {
			err = s.pageCheck(ctx)
		}
	}
	defer s.pc.report()
	if err == nil && !s.held.hold(true) { // from COMMIT on, a cancel would lose the guest
		err = fmt.Errorf("cancelled before COMMIT: %w", s.held.Err())
	}
	if err != nil {
		// Resume first: the switch-over deadline bounds the pause, not
		// an answer in flight (stopServing waits up to answerTimeout for
		// it). No COMMIT went out, so the destination never runs the
		// guest, and what an answer still sends of a page the guest
		// writes again here lands where nobody runs it (a transport that
		// answers requests itself, transport.Answerer, goes on doing so
		// until the session closes anyway).
		if rerr := s.src.Resume(); rerr != nil {
			s.opt.Log.Error("resume after failed migration", "err", rerr)
		}
		if s.mustAbort(err) {
			s.pc.stopServing() // the ABORT goes on this session after an answer in flight
		} else {
			// No ABORT follows (mustAbort): the destination gave up, or
			// this side's plugin stopped answering (selfStopped), so
			// nothing more goes on this session to wait for.
			s.pc.cutServing()
		}
		return err
	}
	if err := s.commit(ctx); err != nil {
		return err
	}
	s.setPhase(PhasePostcopy)
	return s.pc.run(ctx)
}

// postcopyOut sends what the paused source owes: zero runs now, the
// absent list (POSTCOPY), then serves requests and sends the state.
// sctx carries the switch-over deadline; ctx outlives it.
func (s *sender) postcopyOut(ctx, sctx context.Context) error {
	pages := s.layout.Pages()
	owed := s.pcUnsent
	if owed == nil {
		owed = bitmap.New(pages)
	}
	// Hints of the current generation still hold for the pages not
	// written since it began (the final sync below says which were): an
	// interrupted pass had not reached them.
	s.hints.poll()
	snap := make([]*bitmap.Bitmap, len(s.hints.marks))
	for i, m := range s.hints.marks {
		snap[i] = bitmap.New(pages)
		snap[i].Or(m)
	}
	dirty := bitmap.New(pages)
	if err := s.sync(dirty); err != nil {
		return fmt.Errorf("final %w", err)
	}
	for i, m := range s.hints.marks {
		m.Or(snap[i])
		m.AndNot(dirty)
	}
	s.hints.scanValid = false
	owed.Or(dirty)
	s.remaining = owed.Count()

	absent, err := s.sendOwedZeros(sctx, owed)
	if err != nil {
		return err
	}
	for i := range s.hints.marks { // no hint applies after the pause any more
		s.hints.marks[i].ClearAll()
	}
	s.hints.scanValid = false
	if err := s.sendAbsent(sctx, absent); err != nil {
		return err
	}
	if s.pc, err = newPostcopy(s, absent); err != nil {
		return err
	}
	s.remaining = s.pc.left
	s.opt.Log.Info("post-copy: absent pages", "pages", s.pc.left)
	// From here on the destination may fault (its LoadState too).
	s.pc.startServing(ctx)
	return s.sendState(sctx)
}

// sendOwedZeros classifies the owed pages: hinted, hole and zero pages go
// as zero runs now (Flushed); it returns the rest, the absent set. Only
// sets of at most zeroCheckPages are zero-checked.
func (s *sender) sendOwedZeros(ctx context.Context, owed *bitmap.Bitmap) (*bitmap.Bitmap, error) {
	absent := bitmap.New(owed.Len())
	c := s.classify(owed)
	next := c.next
	if owed.Count() > zeroCheckPages {
		next = c.nextUnread
	}
	var runs []transport.PageRun
	for {
		r, ok := next(batchPages)
		if !ok {
			break
		}
		if r.wire() == transport.KindZero {
			s.count(r)
			runs = appendRun(runs, r.first, r.count, transport.KindZero)
			if len(runs) >= batchPages {
				if err := s.sendPages(ctx, runs); err != nil {
					return nil, fmt.Errorf("send zero runs at the switch: %w", err)
				}
				runs = runs[:0]
			}
			continue
		}
		if r.kind == runWrong {
			s.hints.stats[r.who].Wrong += r.count
		}
		if s.freeSent != nil {
			s.freeSent.ClearRange(r.first, r.count) // its last send will be data
		}
		absent.SetRange(r.first, r.count)
	}
	if len(runs) > 0 {
		if err := s.sendPages(ctx, runs); err != nil {
			return nil, fmt.Errorf("send zero runs at the switch: %w", err)
		}
	}
	if err := s.tr.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush at the switch: %w", err)
	}
	return absent, nil
}

// nextUnread is classifier.next without reading guest RAM: hinted
// stretches and holes as usual, every populated page as data (a "zero"
// provider's populated pages too, unchecked: they travel and the
// provider is not blamed).
func (c *classifier) nextUnread(uint64) (run, bool) {
	p, end, ok := c.stretch()
	if !ok {
		return run{}, false
	}
	var r run
	if who, ok := c.hints.skip(p); ok {
		n := c.hints.extent(who, p, end)
		r = run{first: p, count: n, kind: runHinted, who: who}
		if c.hints.srcs[who].Meaning == hint.MeaningZero {
			hole, stateEnd := c.state(p)
			r.count = min(p+n, stateEnd) - p
			if !hole {
				r.kind = runData
			}
		}
	} else {
		end = c.hints.nextMarked(p, end)
		hole, stateEnd := c.state(p)
		r = run{first: p, count: min(end, stateEnd) - p, kind: runData}
		if hole {
			r.kind = runHole
		}
	}
	c.p += r.count
	return r, true
}

// sendAbsent sends the POSTCOPY run list of absent, in chunks of at
// most maxRunsPerMsg runs, the last flagged (an empty list is one empty
// last chunk), each with the pages this session queued so far: every
// one of them was flushed, so the destination's landed lane has them
// all to report before it takes a run as post-copy's.
func (s *sender) sendAbsent(ctx context.Context, absent *bitmap.Bitmap) error {
	var runs []pageRun
	absent.Runs(func(first, n uint64) bool {
		runs = append(runs, pageRun{first, n})
		return true
	})
	for i := 0; i == 0 || i < len(runs); i += maxRunsPerMsg {
		end := min(i+maxRunsPerMsg, len(runs))
		m := transport.Message{Kind: msgPostcopy, Payload: encodePostcopy(s.queued, runs[i:end], end == len(runs))}
		if err := s.tr.SendMessage(ctx, m); err != nil {
			return fmt.Errorf("send the absent pages (POSTCOPY): %w", err)
		}
	}
	return nil
}

// report copies the post-copy counters into the report; safe on nil.
func (pc *pcSend) report() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	s := pc.s
	c := pc.owed.Counts()
	answered, zero := pc.answered.Answered+c.Answered, pc.answered.AnsweredZero+c.AnsweredZero
	s.rep.PagesRequested, s.rep.PagesPushed = answered, pc.pushed.n
	s.rep.PagesSent = pc.sentBase + pc.dataPages + answered - zero
	s.rep.PagesZero = pc.zeroBase + pc.zeroPages + zero
}

// againCount is the requested pages that were queued already.
func (pc *pcSend) againCount() uint64 {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.answered.Again + pc.owed.Counts().Again
}

// run is post-copy proper, from RUNNING: push the owed pages, wait for
// SETTLED, reconnect after a broken connection.
func (pc *pcSend) run(ctx context.Context) error {
	s := pc.s
	running := time.Now()
	s.capStart, s.capBytes = running, 0 // the cap applies to the pusher, from now
	for {
		// A session in which nothing moves for StallTimeout is broken.
		wctx, stopWatch := pc.stall.watch(ctx)
		var err error
		if pc.settled == nil { // SETTLED as the answer to RESUME: nothing is left to push
			err = pc.push(wctx)
		}
		if err == nil {
			var done bool
			if done, err = pc.settle(wctx, running); done {
				stopWatch()
				return err
			}
		}
		err = stalledLink(ctx, wctx, err)
		stopWatch()
		if !isLink(err) || ctx.Err() != nil {
			return pc.broken(err)
		}
		if said := pc.lastWord(); said != nil {
			return pc.broken(said)
		}
		if pc.settled != nil {
			continue // SETTLED came as a doubted session was given up: settle takes it
		}
		if err := pc.reconnect(ctx, err); err != nil {
			return err
		}
	}
}

// push sends the owed pages in batches, from where the last request
// left off, Flushing every pushFlushBytes and at the end. The bandwidth
// cap applies (the urgent path is not capped).
func (pc *pcSend) push(ctx context.Context) error {
	s := pc.s
	var unflushed uint64
	var runs []pageRun
	var out []transport.PageRun
	for {
		if err := pc.poll(); err != nil {
			return err
		}
		if runs = pc.take(pushBatchPages, runs[:0]); len(runs) == 0 {
			break
		}
		out = pc.wire(runs, out[:0])
		if err := s.sendPages(ctx, out); err != nil {
			return pc.pushFailed(fmt.Errorf("push pages: %w", err))
		}
		pc.stall.moved()
		for _, r := range out {
			if r.Kind == transport.KindData {
				unflushed += r.Count * framework.PageSize
				s.capBytes += r.Count * framework.PageSize
			}
		}
		if unflushed >= pushFlushBytes {
			if err := s.tr.Flush(ctx); err != nil {
				return pc.pushFailed(fmt.Errorf("flush pushed pages: %w", err))
			}
			pc.stall.moved()
			unflushed = 0
		}
		pc.report()
		s.progress(false)
		if err := s.throttle(ctx, s.capBytes); err != nil {
			return err
		}
	}
	// The destination may answer SETTLED and end the session before this
	// Flush's answer: SETTLED decides (settle reads what arrived before
	// the end; without it, the broken session is seen there).
	if err := s.tr.Flush(ctx); err != nil {
		pc.doubt(fmt.Errorf("flush the last pushed pages: %w", err))
	}
	pc.report()
	s.progress(true)
	return nil
}

// pushFailed is push's error for a failed SendPages or Flush: a
// linkError, unless nothing is owed any more: then the destination may
// have answered SETTLED and ended the session already, which is why the
// call failed, and settle decides (nil), but only for unsureWait (doubt).
func (pc *pcSend) pushFailed(err error) error {
	if pc.owedCount() == 0 {
		pc.doubt(err)
		return nil
	}
	return linkError{err}
}

// doubt records that a call which took pages from owed failed while
// nothing is owed (the first such reason of the session counts). The
// failure may come from the session's end, SETTLED before it; but a
// transport may also refuse a call and keep its session (the transport
// contract promises no more), having written none or only some of the
// pages the call took. The destination then lacks them and never
// settles, and a fault on one of them waits, since a REQUEST for a page
// no longer owed is not answered. So settle waits for SETTLED or the
// session's end at most unsureWait, then ends the session itself, and
// the reconnect's MISSING names what did not land. Until 2026-12-07 it
// waited until the stall watch ended the session (stall_timeout, 30 s
// by default: TestPostcopyPushFailedNothingOwed). What it does not do:
// owe the taken pages again on the same session. The failed call may
// have written some of them, and a second copy of a page the guest
// already owns breaks post-copy on the destination; only the
// destination's MISSING knows which pages did not land.
func (pc *pcSend) doubt(err error) {
	pc.s.opt.Log.Info("post-copy: a send failed with nothing owed; waiting briefly for what the destination said",
		"err", err, "wait", unsureWait)
	if pc.unsure == nil {
		pc.unsure = err
	}
}

// unsureWait bounds settle's wait for SETTLED or the session's end
// after doubt. A session that ended shows it within moments (a SETTLED
// sent before the end is delivered first); one that goes on shows
// neither, while the guest may wait on a page of the failed call. A
// wait too short costs a reconnect only: the destination answers RESUME
// with SETTLED (lingerToTell) or MISSING; a SETTLED that comes while
// lastWord looks is taken. A variable for tests.
var unsureWait = time.Second

// poll looks, without waiting, at what the destination said and at the
// request server: a broken session is a linkError.
func (pc *pcSend) poll() error {
	s := pc.s
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return linkError{fmt.Errorf("destination went away: %w", transport.ErrClosed)}
		}
		if m.Kind == msgSettled && pc.owedCount() == 0 {
			pc.settled = &m // the last pages landed before our Flush
			return nil
		}
		return pc.unexpected(m)
	case err := <-pc.serveErr:
		if isLink(err) && pc.owedCount() == 0 {
			pc.serveGone = true // SETTLED may be on its way: settle decides
			pc.doubt(err)       // or an answer failed with the session up
			return nil
		}
		return err
	default:
		return nil
	}
}

// unexpected is the error for a message from the destination in post-
// copy that is not a SETTLED we wait for.
func (pc *pcSend) unexpected(m transport.Message) error {
	switch m.Kind {
	case msgAbort:
		return fmt.Errorf("%w in post-copy: %s", errDestinationAborted, m.Payload)
	case msgBroken:
		return fmt.Errorf("%w: %s", errDestinationBroken, m.Payload)
	}
	return fmt.Errorf("%w: %s from the destination in post-copy (%d pages still owed)", errMalformed, msgName(m.Kind), pc.owedCount())
}

// settle waits for SETTLED once every owed page was queued and Flushed.
// done means post-copy ended: completed, with err set if the destination
// found pages that differ. On SETTLED it stops the request server with
// stopServing, not cutServing: the echo (answer) goes on this session
// next, and a cut answer would fail the session under it on transports
// where a cut write does (tcp over TLS, rdma). It cannot echo on a
// session that failed all the same (an answer stuck past answerTimeout,
// a broken connection): the destination then hears it on a RESUME.
func (pc *pcSend) settle(ctx context.Context, running time.Time) (done bool, err error) {
	s := pc.s
	var m transport.Message
	if pc.settled != nil {
		m, pc.settled = *pc.settled, nil
	} else {
		var err error
		if m, err = pc.awaitSettled(ctx); err != nil {
			return false, err
		}
	}
	if m.Kind != msgSettled {
		return false, pc.unexpected(m)
	}
	if len(m.Payload) != 16 {
		return false, fmt.Errorf("%w: SETTLED of %d bytes", errMalformed, len(m.Payload))
	}
	s.rep.PostcopyMS = time.Since(running).Milliseconds()
	pc.stopServing()
	pc.answer(msgSettled)
	pc.report()
	if err := s.ho.move(HandoverCompleted); err != nil {
		return true, err
	}
	bad, first := binary.LittleEndian.Uint64(m.Payload), binary.LittleEndian.Uint64(m.Payload[8:])
	if bad != 0 {
		err := fmt.Errorf("%w: %d pages differed from the source's when they landed on the destination "+
			"(first: page %d); the VM runs on the destination with them, this paused copy is not resumed", ErrPostcopyCheck, bad, first)
		s.opt.Log.Error("post-copy page check failed", "pages", bad, "first", first)
		return true, err
	}
	s.opt.Log.Info("post-copy completed", "postcopy_ms", s.rep.PostcopyMS, "requested", s.rep.PagesRequested,
		"pushed", s.rep.PagesPushed, "requests_for_queued_pages", pc.againCount())
	return true, nil
}

// awaitSettled waits for the destination's next message (SETTLED, or
// what settle refuses) once every owed page was queued. A session that
// ended shows on both msgs and the request server: the server may see
// it first, but a SETTLED that arrived before the end is still
// delivered on msgs, which decides. After a failed send or answer
// (unsure, doubt) it waits at most unsureWait, then takes the session
// for broken (a linkError): the destination may lack that call's pages.
func (pc *pcSend) awaitSettled(ctx context.Context) (transport.Message, error) {
	serveErr := pc.serveErr
	if pc.serveGone {
		serveErr = nil
	}
	var timer *time.Timer
	var unsure <-chan time.Time // fires unsureWait after the doubt
	doubted := func() {
		timer = time.NewTimer(unsureWait)
		unsure = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if pc.unsure != nil {
		doubted()
	}
	for {
		select {
		case m, ok := <-pc.s.msgs:
			if !ok {
				return m, linkError{fmt.Errorf("destination went away before SETTLED: %w", transport.ErrClosed)}
			}
			return m, nil
		case err := <-serveErr:
			if !isLink(err) {
				return transport.Message{}, err
			}
			serveErr = nil
			if unsure == nil {
				pc.doubt(err)
				doubted()
			}
		case <-unsure:
			return transport.Message{}, linkError{fmt.Errorf("no SETTLED and no end of the session within %v of a send that "+
				"failed with nothing owed (%v): the destination may lack the pages it took; "+
				"ending the session, so that the destination's MISSING names them", unsureWait, pc.unsure)}
		case <-ctx.Done():
			return transport.Message{}, ctx.Err()
		}
	}
}

// lastWord looks, after the session broke, for what the destination
// said before the end (its messages are delivered before the end is):
// a BROKEN means there is nobody to reconnect to. It waits at most
// lastWordWait for the receive goroutine to see the end; nil if the
// destination said nothing. After a doubt (unsure) the session may
// still be up, and a SETTLED that arrives now, with nothing owed, is
// kept for settle (pc.settled), which answers it on this session: the
// destination has every page. Dropping it cost a reconnect, and a
// source that held SETTLED then heard it only if the destination still
// listened for it (lingerToTell; a cancel of its caller ends that), or
// ended postcopy-broken, paused (TestPostcopySettledAfterDoubt). Any
// other SETTLED here is still dropped, the reconnect hears it again: a
// session that broke may not carry the answer, and the destination
// would then listen for a source that completed.
func (pc *pcSend) lastWord() error {
	t := time.NewTimer(lastWordWait)
	defer t.Stop()
	for {
		select {
		case m, ok := <-pc.s.msgs:
			if !ok {
				return nil
			}
			if m.Kind == msgBroken {
				return pc.unexpected(m)
			}
			if m.Kind == msgSettled && pc.unsure != nil && pc.owedCount() == 0 {
				pc.settled = &m
				return nil
			}
			pc.s.opt.Log.Warn("post-copy: message from the destination before the connection broke, ignored", "kind", msgName(m.Kind))
		case <-t.C:
			return nil
		}
	}
}

// answer answers the destination's BROKEN or SETTLED (kind), or its
// ABORT to a RESUME, with an empty one, if the session still carries
// messages: it then knows this side heard and need not wait for it to
// reconnect (pcRecv.lingerToTell).
// Failures only cost the destination its wait.
func (pc *pcSend) answer(kind uint32) {
	s := pc.s
	if !s.trOpen {
		return // reopen answered before it closed the session, or it broke
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	if err := s.tr.SendMessage(ctx, transport.Message{Kind: kind}); err != nil {
		s.opt.Log.Info("post-copy: could not answer the destination's "+msgName(kind), "err", err)
	}
}

// answerTimeout bounds answer's send.
const answerTimeout = 2 * time.Second

// lastWordWait bounds lastWord's wait for the end of the stream.
const lastWordWait = 500 * time.Millisecond

// broken ends post-copy for good: the VM ran on the destination and this
// copy is stale.
func (pc *pcSend) broken(cause error) error {
	if errors.Is(cause, errDestinationBroken) {
		pc.stopServing() // the session carries the answer, BROKEN, after an answer in flight
	} else {
		pc.cutServing() // the session failed or was given up
	}
	pc.report()
	if errors.Is(cause, errDestinationBroken) {
		pc.answer(msgBroken)
		if pc.s.ho.get() == HandoverCommitting {
			// RUNNING was lost, but BROKEN says the VM ran there.
			if err := pc.s.ho.move(HandoverPostcopy); err != nil {
				return err
			}
		}
	}
	if pc.s.ho.get() == HandoverCommitting {
		// COMMIT went out, RUNNING never came and no destination took
		// the reconnect: it may never have received COMMIT.
		return pc.s.unknown(fmt.Errorf("no RUNNING after COMMIT, and no destination resumed post-copy: %v", cause))
	}
	if err := pc.s.ho.move(HandoverPostcopyBroken); err != nil {
		pc.s.opt.Log.Error("post-copy broken", "err", err)
	}
	err := fmt.Errorf("%w (%d pages still owed): %v. The VM ran on the destination: this paused copy must never be resumed; "+
		"if the destination VMM is gone, the VM is lost", ErrPostcopyBroken, pc.owedCount(), cause)
	pc.s.opt.Log.Error("post-copy broken", "err", err)
	return err
}

// reconnect opens the transport again after the connection broke, with
// a backoff, until ReconnectTimeout passes or ctx ends; on success the
// destination's MISSING pages are owed again and post-copy goes on.
func (pc *pcSend) reconnect(ctx context.Context, cause error) error {
	s := pc.s
	since := time.Now()
	s.opt.Log.Warn("post-copy: the connection broke; opening it again", "err", cause, "reconnect_timeout", s.opt.ReconnectTimeout)
	pc.cutServing() // the session broke: an answer in flight saves nothing
	s.stopReceive()
	pc.unsure = nil // a failed send of this session: the next one's MISSING says what it left
	seen := s.stats.get()
	s.stats.close()
	s.stats = nil
	s.closeTransport(true, seen)
	rctx, cancel := context.WithTimeout(ctx, s.opt.ReconnectTimeout)
	defer cancel()
	stop := reportReconnecting(s.opt.Progress, s.progressAt(since, -1), s.start, since)
	defer stop() // before anything reports progress again
	wait := reconnectMin
	for attempt := 1; ; attempt++ {
		final, err := pc.reopen(ctx, rctx)
		if err == nil {
			s.rep.Reconnects++
			s.opt.Log.Info("post-copy: reconnected", "attempt", attempt, "owed", pc.owedCount())
			return nil
		}
		if final && errors.Is(err, errDestinationAborted) && s.ho.get() == HandoverCommitting {
			// Before RUNNING: the ABORT that answers this RESUME, from a
			// destination that never got COMMIT (recommit resumes here).
			return err
		}
		if final {
			return pc.broken(err)
		}
		s.opt.Log.Warn("post-copy: reconnect failed", "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-rctx.Done():
		}
		t.Stop()
		if rctx.Err() != nil {
			if ctx.Err() != nil {
				return pc.broken(fmt.Errorf("%w (reconnecting after: %v)", ctx.Err(), cause))
			}
			return pc.broken(fmt.Errorf("could not reconnect within reconnect_timeout %v (last try: %v; the connection broke with: %v)",
				s.opt.ReconnectTimeout, err, cause))
		}
		wait = min(2*wait, reconnectMax)
	}
}

// reopen opens the transport (the same OpenRequest), sends RESUME and
// reads MISSING. final means the destination refused for good (the ABORT
// that answers this RESUME, BROKEN, or a malformed answer). Any other
// ABORT is a failed try (errAbortNotAnswer). ctx is the migration's,
// rctx bounds this try.
func (pc *pcSend) reopen(ctx, rctx context.Context) (final bool, err error) {
	s := pc.s
	s.queued = 0
	if err := openTransport(rctx, s.tr, s.openReq, &s.rep); err != nil {
		// A failed Open may leave something open, which its caller
		// closes before the next (transport.Transport, "Listening"): a
		// launched plugin's side of an Open given up on here may still
		// run, and succeed, and then refuse the next try's Open.
		transport.CloseHolding(s.tr)
		s.trHeld = true // the last close still calls Close (closeTransport)
		return false, fmt.Errorf("open transport: %w", err)
	}
	s.trOpen, s.trHeld = true, false
	s.startReceive(ctx)
	fail := func(final bool, err error) (bool, error) {
		s.stopReceive()
		s.closeTransport(true, transport.Stats{})
		return final, err
	}
	if err := s.tr.SendMessage(rctx, transport.Message{Kind: msgResume, Payload: encodeResume(pc.pages, s.tag)}); err != nil {
		return fail(false, fmt.Errorf("send RESUME: %w", err))
	}
	var missing []pageRun
	var after uint64
	for last := false; !last; {
		m, err := s.answer(rctx)
		switch {
		case errors.Is(err, errDestinationAborted):
			why, answers := resumeAbort(m.Payload, s.tag)
			if !answers {
				return fail(false, fmt.Errorf("%w: %q", errAbortNotAnswer, m.Payload[:min(len(m.Payload), maxAbortReason)]))
			}
			pc.answer(msgAbort) // heard: it need not wait for another RESUME (pcRecv.tellAborted)
			return fail(true, fmt.Errorf("%w: %s", errDestinationAborted, why))
		case errors.Is(err, errDestinationBroken):
			pc.answer(msgBroken)
			return fail(true, err)
		case err != nil:
			return fail(false, fmt.Errorf("waiting for MISSING: %w", err))
		case m.Kind == msgSettled && len(missing) == 0:
			// Every page arrived there; the session that carried the
			// first SETTLED broke before it was read here.
			pc.settled = &m
			s.stats = startStats(ctx, s.tr)
			return false, nil
		case m.Kind != msgMissing:
			return fail(true, fmt.Errorf("%w: %s from the destination instead of MISSING", errMalformed, msgName(m.Kind)))
		}
		if missing, last, after, err = decodeRuns(missing, m.Payload, pc.pages, after); err != nil {
			return fail(true, fmt.Errorf("MISSING: %w", err))
		}
	}
	if err := pc.renew(); err != nil {
		return fail(true, err)
	}
	pc.owe(missing)
	s.stats = startStats(ctx, s.tr)
	pc.startServing(ctx)
	return false, nil
}

// errAbortNotAnswer: an ABORT read after RESUME that does not answer it
// (resumeAbort): it carries no tag, or another. It comes from a
// destination that did not read this RESUME or does not know this
// migration, such as a fresh destination at the same address that closed
// the session as silent (receiver.waitAgain) after the one that got
// COMMIT ran the guest and died. It says nothing of whether COMMIT
// arrived, so the source never resumes on it: the try failed, and the
// next one dials again; after reconnect_timeout a source whose COMMIT
// went out ends handover-unknown.
var errAbortNotAnswer = errors.New("an ABORT that does not answer this RESUME (its sender did not read it, " +
	"or does not know this migration: it says nothing of whether COMMIT arrived)")

// answer waits for the destination's next answer to RESUME (a MISSING
// chunk, SETTLED, BROKEN or ABORT), at most SwitchoverTimeout, doubled
// for each try in a row that got no answer (quietBound): a destination
// that took the session answers at once. A session that opened and then
// carries nothing back (the connection died right after the transport's
// handshake, RESUME with it; a destination that took the session and
// hangs) would otherwise hold this try, and with it the whole reconnect,
// until reconnect_timeout: the try fails and the next one dials again. A
// destination that is only slow, by the same margin on every try (its
// transport's Open returns later than this side's), is waited for longer
// on each next try, until its answer fits.
func (s *sender) answer(rctx context.Context) (transport.Message, error) {
	bound := quietBound(s.opt.SwitchoverTimeout, s.quiet)
	actx, cancel := context.WithTimeout(rctx, bound)
	defer cancel()
	m, err := s.next(actx)
	switch {
	case err == nil:
		s.quiet = 0
	case rctx.Err() == nil && actx.Err() == context.DeadlineExceeded:
		s.quiet++
		err = fmt.Errorf("the destination answered nothing for %v (switchover_timeout %v, doubled for each unanswered try "+
			"in a row; the next try waits %v): %w", bound, s.opt.SwitchoverTimeout, quietBound(s.opt.SwitchoverTimeout, s.quiet), err)
	}
	return m, err
}

// encodeResume writes RESUME: u32 protocol version, u64 pages, the
// migration's tag; exactly 28 bytes.
func encodeResume(pages uint64, tag migrationTag) []byte {
	b := binary.LittleEndian.AppendUint32(nil, protocolVersion)
	b = binary.LittleEndian.AppendUint64(b, pages)
	return append(b, tag[:]...)
}

// decodeResume reads RESUME; a version other than protocolVersion is
// refused like HELLO's. The caller compares pages and the tag with its
// own (checkResume).
func decodeResume(b []byte) (pages uint64, tag migrationTag, err error) {
	if len(b) < 4 {
		return 0, tag, fmt.Errorf("%w: RESUME of %d bytes", errMalformed, len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != protocolVersion {
		return 0, tag, fmt.Errorf("source resumes with engine protocol %d, this destination speaks %d", v, protocolVersion)
	}
	if len(b) != 28 {
		return 0, tag, fmt.Errorf("%w: RESUME of %d bytes", errMalformed, len(b))
	}
	copy(tag[:], b[12:])
	return binary.LittleEndian.Uint64(b[4:]), tag, nil
}
