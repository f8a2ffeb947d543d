package engine

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/postcopy"
	"github.com/ferryvm/ferry/framework/transport"
)

// The destination side of post-copy (postcopy.go draws the exchange,
// docs/POSTCOPY.md the fault service).
//
//	HELLO may-switch ─► check: PostcopyTarget, userfaultfd, GuestMemory sizes
//	READY ◄─ (landed lane armed first: Landed called in a loop, runs discarded)
//	POSTCOPY chunks ─► absent runs; after the last: drain the landed lane
//	                   (until it reported the pages the source queued),
//	                   open the userfaultfd, seed the Service (memfd holes
//	                   zero-known, other held pages landed, absent stay
//	                   absent), Register, start the fault loop,
//	                   Postcopy(toucher), the landed lane feeds the
//	                   Service, the request sender runs
//	STATE ─► LoadState (loadState: it may fault), LOADED,
//	         [HASHES: held pages now, absent ones when they land]
//	COMMIT ─► Resume, RUNNING; wait until every page arrived; Settle,
//	          Unregister, Postcopy(nil), close, SETTLED
//
// The goroutines of one transport session: the landed lane (Landed →
// the page check on arrival → Service.Landed/Zero) and the request
// sender (Service's Request queue → REQUEST on the urgent path). The
// fault loop (Service.Run) lives as long as the userfaultfd. When the
// session breaks after RUNNING, the guest keeps running on what it
// holds; the old session's landed runs are drained into the Service,
// the transport is opened again and the source's RESUME is answered
// with MISSING. Giving up halts the VM before the userfaultfd closes;
// if it cannot be halted, the userfaultfd is never closed
// (postcopy_halt.go).

// pcDrainTimeout bounds the wait on the old session's landed lane after
// reconnect closed that session: the lane returns what was reported,
// then the session's end; one still running after that (a Landed that
// does not return on close) is cancelled and waited for, and what it
// did not report is MISSING. A variable for tests.
var pcDrainTimeout = 5 * time.Second

// postcopyWhyNot says why this destination cannot serve post-copy
// faults, or "" if it can: checked at HELLO when the source may switch.
func (r *receiver) postcopyWhyNot() string {
	pt, ok := r.dst.(framework.PostcopyTarget)
	if !ok {
		return "the destination VMM does not support post-copy (its Target is not a framework.PostcopyTarget)"
	}
	if err := postcopy.Available(); err != nil {
		return err.Error()
	}
	for i, reg := range r.layout {
		if m := pt.GuestMemory(i); uint64(len(m)) != reg.Size || len(m) == 0 {
			return fmt.Sprintf("the destination VMM's guest memory %d is %d bytes, its RAM region %d bytes", i, len(m), reg.Size)
		}
	}
	return ""
}

// pcRecv is a destination's post-copy, from a READY that said it could
// serve one to its end.
type pcRecv struct {
	r   *receiver
	pt  framework.PostcopyTarget
	ctx context.Context // Receive's: the sessions' goroutines end with it

	absent []pageRun // POSTCOPY's runs so far
	after  uint64    // where the last POSTCOPY chunk ended
	queued uint64    // POSTCOPY's count of pages the source queued before it
	on     bool      // the last POSTCOPY chunk arrived: the VM will run here before every page did

	sess     *pcSession // the current transport session's goroutines
	sessions int        // transport sessions started (the first is 1)
	// runsDropped counts landed runs that broke the transport's contract
	// but claimed nothing the engine could act on (landedFeed), every
	// session's: Report.LandedRunsDropped.
	runsDropped atomic.Uint64
	// noKind holds the pages a dropped run of no kind covered, every
	// session's (dropped; nil until the first): one covered again is
	// logged as an error.
	noKind *bitmap.Bitmap

	u         *uffd.FD
	m         postcopy.Mapping
	svc       *postcopy.Service
	req       *requester
	check     *landCheck
	stopLoop  context.CancelFunc
	loopDone  chan error // the fault loop's end (buffered)
	arrived   chan struct{}
	arriveMu  sync.Once
	committed chan struct{} // closed at COMMIT (or the end): watchSetup stops
	commitMu  sync.Once
	watchDone chan struct{} // closed once watchSetup returned

	// refused is the first landed batch a session's lane refused (a run
	// not guest RAM's or of no kind over pages held here, or the fault
	// service's refusal: a page the guest owns written again), kept by
	// stopSession: one refused after wait took arrival is finish's to
	// report, the migration being over.
	refused    error
	touching   bool       // Postcopy(toucher) was called and not undone yet
	notHalted  bool       // post-copy broke and Halt failed: the userfaultfd and the Toucher stay (postcopy_halt.go)
	sourceGone bool       // every page arrived after no source reconnected: nobody to send SETTLED to
	stall      stallWatch // pages landing in the current session (wait)
	resumedAt  time.Time
	doneAt     time.Time
	reconnects int
}

// newPCRecv starts a post-copy after a READY that said this side can
// serve one; the caller starts the first session before sending READY.
func newPCRecv(ctx context.Context, r *receiver) *pcRecv {
	return &pcRecv{r: r, pt: r.dst.(framework.PostcopyTarget), ctx: ctx, arrived: make(chan struct{})}
}

// pcSession is the goroutines of one transport session: the landed lane
// and, once post-copy is on, the request sender.
type pcSession struct {
	ctx     context.Context
	cancel  context.CancelFunc
	feed    *landedFeed
	reqDone chan error // the request sender's end (buffered); nil until started
}

// startSession starts the landed lane on r.tr: discarding what it
// reports (pre-copy, until setup's drain) or, with service, feeding the
// fault service (a reconnect's session). The transport records
// every write of the session for Landed, those before its first call
// too (transport.Transport), so the lane may start after the source
// began to send (it sends after READY, or MISSING after RESUME: a
// landed lane that started after those lost their reports once,
// TestPostcopyLaneArmedLate).
func (pc *pcRecv) startSession(ctx context.Context, service bool) {
	sctx, cancel := context.WithCancel(ctx)
	f := newLandedFeed(pc.r.layout.Pages(), nil)
	pc.sessions++
	f.onDrop = pc.dropped(pc.sessions)
	if service {
		pc.feedService(f)
	}
	s := &pcSession{ctx: sctx, cancel: cancel, feed: f}
	go s.feed.run(sctx, pc.r.tr)
	pc.sess = s
}

// feedService makes f hand its runs to the page check and the fault
// service (feedRuns), which judges its runs of no kind (Awaited); f.mu
// is held, or f is not running yet.
func (pc *pcRecv) feedService(f *landedFeed) {
	f.sink, f.awaited, f.taken = pc.feedRuns, pc.svc.Awaited, pc.noteArrived
}

// dropped returns the landedFeed.onDrop of session number session:
// each run dropped counts in Report.LandedRunsDropped, and the first of
// the session is logged as a warning naming the session and the
// migration (the engine does not know the transport plugin's name: the
// job's transport block does).
//
// The first run of no kind of the session over a page such a run
// covered before (this session's or an earlier one's) is logged as an
// error besides: that plugin keeps the page from ever arriving, so
// post-copy cannot complete while it runs (docs/POSTCOPY.md). Nothing
// ends it: halting the guest for it would lose the guest, while a
// plugin replaced (a launched one is started again at each reconnect)
// lets post-copy complete. Only the lanes, one at a time, call it.
func (pc *pcRecv) dropped(session int) func(transport.PageRun, string, uint64) {
	said := false // this session logged the error
	return func(r transport.PageRun, why string, n uint64) {
		pc.runsDropped.Add(1)
		if r.Count > 0 { // of no kind, over pages still owed
			if pc.noKind == nil {
				pc.noKind = bitmap.New(pc.r.layout.Pages())
			}
			again := pc.noKind.NextSetIn(r.First, r.First+r.Count) < r.First+r.Count
			pc.noKind.SetRange(r.First, r.Count)
			if again && !said {
				said = true
				pc.r.opt.Log.Error("post-copy: the transport plugin reported pages of no kind again, pages it reported "+
					"so before; they arrive only when it reports them as data or zeros, so post-copy cannot complete "+
					"while this plugin runs, and the guest waits on them (each stall reconnects and asks for them again). "+
					"Replace the transport plugin: a launched plugin is started again at the next reconnect",
					"session", session, "migration", pc.r.tagPrint, "first", r.First, "count", r.Count, "kind", int(r.Kind),
					"pages_missing", pc.svc.Pending())
			}
		}
		if n > 1 {
			return
		}
		pc.r.opt.Log.Warn("post-copy: the transport plugin reported a landed run that breaks its contract; dropped, "+
			"as "+why+" (it cannot have put a wrong byte where the guest reads it); later ones of this session are "+
			"only counted (landed_runs_dropped). The plugin is faulty: report it to its authors",
			"session", session, "migration", pc.r.tagPrint, "first", r.First, "count", r.Count, "kind", int(r.Kind))
	}
}

// startRequests starts the request sender of the current session.
func (pc *pcRecv) startRequests() {
	s := pc.sess
	s.reqDone = make(chan error, 1)
	go func() { s.reqDone <- pc.req.run(s.ctx, pc.r.tr) }()
}

// stopSession ends the current session's goroutines and waits for them.
func (pc *pcRecv) stopSession() {
	s := pc.sess
	if s == nil {
		return
	}
	s.cancel()
	<-s.feed.done
	if s.feed.fatal && pc.refused == nil {
		pc.refused = s.feed.err
	}
	if s.reqDone != nil {
		<-s.reqDone
		s.reqDone <- errSessionStopped // a later select sees it ended
	}
	pc.sess = nil
}

var errSessionStopped = errors.New("post-copy session stopped")

// landedFeed is the landed lane: one goroutine calling Landed in a loop
// and handing each batch to sink, under mu so that the sink can be
// changed between two batches. A nil sink discards (pre-copy: the
// source's Flush covers those pages).
//
// Every run is checked against guest RAM (pages) before it is counted
// or handed on (take): the transport is a plugin, possibly a third
// party's, and a run that fails transport.PageRun.Check breaks its
// contract. What the engine does with it depends on what it claims
// (claimOf; docs/POSTCOPY.md, "Landed runs that break the contract"):
//
//   - a write outside guest RAM (beyond its end, wrapping past 2^64, or
//     an empty run whose first page lies past the end): none of its
//     batch is taken, and the lane ends as the fault service's refusal
//     ends it (fatal, errLandedInvalid): before COMMIT the switch fails
//     and the source resumes; after it post-copy breaks (the VM halts),
//     as for a second copy of a page the guest owns, since a transport
//     that says it wrote where no guest page is cannot be trusted with
//     where it wrote the others;
//   - nothing (an empty run inside guest RAM, or at its end): dropped,
//     counted (onDrop); it cannot have put a byte anywhere;
//   - a write of no kind the engine knows, inside guest RAM: the engine
//     cannot apply it (data or zeros?), and the pages may hold anything
//     now. Once the sink is the fault service (awaited set), it is
//     dropped when every page it names is still awaited there (absent
//     or requested: mapped only on a later valid report, which the
//     source sends again when asked), and refused as a breach (fatal,
//     after the runs before it in its batch were handed on) when one is
//     not: a landed or zero-known page would be mapped with what the
//     memfd holds now, a placed one is the guest's. Before (pre-copy,
//     the drain), it refuses its whole batch: the switch fails, which
//     costs the guest nothing.
//
// What it cannot tell: a run inside guest RAM that the transport did
// not write, or wrote elsewhere, and a write it never reported.
type landedFeed struct {
	mu    sync.Mutex
	pages uint64 // guest RAM's, for the runs' check
	sink  func([]transport.PageRun) error
	// awaited, set with a sink that feeds the fault service, says
	// whether every page of a run is still awaited there
	// (postcopy.Service.Awaited); nil before.
	awaited func(first, count uint64) bool
	// onDrop, if set, is told of each run dropped (claimNothing, or of
	// no kind over awaited pages), with why and how many this lane
	// dropped so far, that one included (under mu).
	onDrop func(r transport.PageRun, why string, n uint64)
	// taken, if set, is called after each batch taken whole, none of it
	// refused (under mu): the fault service's arrival (noteArrived). Not
	// the sink's to note: take hands a batch on in parts, around the
	// runs it drops, and a run refused after a part that brought the
	// last owed pages must find arrival not noted (waitEnd;
	// TestPostcopyLastPagesSplitBatch).
	taken   func()
	dropped uint64        // runs dropped (under mu)
	got     uint64        // pages of every batch handed on so far (under mu)
	more    chan struct{} // signalled (non-blocking) after each batch
	done    chan struct{}
	err     error // why it ended (read after done)
	fatal   bool  // err is a refused batch (the transport's breach or the fault service's refusal), not the session's end
}

// newLandedFeed returns a lane for a guest of pages pages.
func newLandedFeed(pages uint64, sink func([]transport.PageRun) error) *landedFeed {
	return &landedFeed{pages: pages, sink: sink, more: make(chan struct{}, 1), done: make(chan struct{})}
}

// errLandedInvalid: the transport reported a landed run that is not one
// of guest RAM's, or one of no kind over pages this destination holds
// (landedFeed).
var errLandedInvalid = errors.New("the transport reported a landed run that breaks its contract")

// What a landed run claims (claimOf).
const (
	claimWrite   = iota // a valid run (transport.PageRun.Check): data or zeros written inside guest RAM
	claimNothing        // no page: an empty run whose first page is inside guest RAM or at its end
	claimNoKind         // pages inside guest RAM, of no kind the engine knows
	claimOutside        // pages outside guest RAM, or an empty run past its end
)

// claimOf says what r claims for a guest of pages pages.
func claimOf(r transport.PageRun, pages uint64) int {
	end, carry := bits.Add64(r.First, r.Count, 0)
	switch {
	case r.Check(pages) == nil:
		return claimWrite
	case r.Count == 0 && r.First <= pages:
		return claimNothing
	case carry != 0 || end > pages:
		return claimOutside
	}
	return claimNoKind
}

func (f *landedFeed) run(ctx context.Context, tr transport.Transport) {
	defer close(f.done)
	for {
		runs, err := tr.Landed(ctx)
		if len(runs) > 0 {
			if terr := f.take(runs); terr != nil {
				f.err, f.fatal = terr, true
				return
			}
			select {
			case f.more <- struct{}{}:
			default:
			}
		}
		if err != nil {
			f.err = err
			return
		}
	}
}

// take checks a batch and hands it on (landedFeed): its valid runs in
// order, the dropped ones left out. An error refuses the batch: all of
// it for a run outside guest RAM (or of no kind before awaited is set),
// the rest of it from a run of no kind over pages not awaited or a
// refusal of the sink.
func (f *landedFeed) take(runs []transport.PageRun) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range runs {
		if c := claimOf(r, f.pages); c == claimOutside || c == claimNoKind && f.awaited == nil {
			return fmt.Errorf("%w (%v); none of its batch of %d runs is taken: "+
				"the transport plugin is faulty", errLandedInvalid, r.Check(f.pages), len(runs))
		}
	}
	from := 0
	for i, r := range runs {
		c := claimOf(r, f.pages)
		if c == claimWrite {
			continue
		}
		if err := f.handOn(runs[from:i]); err != nil {
			return err
		}
		from = i + 1
		why := "it names no page"
		if c == claimNoKind {
			if !f.awaited(r.First, r.Count) {
				return fmt.Errorf("%w (page run %d+%d of no kind (%d) over pages this destination holds: "+
					"the transport may have written over them); the transport plugin is faulty",
					errLandedInvalid, r.First, r.Count, int(r.Kind))
			}
			why = "it has no kind, and every page it names is still awaited"
		}
		f.dropped++
		if f.onDrop != nil {
			f.onDrop(r, why, f.dropped)
		}
	}
	if err := f.handOn(runs[from:]); err != nil {
		return err
	}
	if f.taken != nil {
		f.taken()
	}
	return nil
}

// handOn counts runs (all valid) and hands them to the sink; f.mu is
// held.
func (f *landedFeed) handOn(runs []transport.PageRun) error {
	if len(runs) == 0 {
		return nil
	}
	var err error
	if f.sink != nil {
		err = f.sink(runs)
	}
	for _, r := range runs {
		f.got += r.Count
	}
	return err
}

// drain waits until the lane reported want pages (POSTCOPY's count of
// what the source queued before it: each is reported once, since the
// lane was armed before the source sent any) and then, atomically
// against the next batch, switches the sink to buf. Every write
// reported from then on is post-copy's. More than want is a broken
// transport or source: a stale pre-copy write could pass for a
// post-copy page, so the switch fails (before COMMIT: the source
// resumes).
func (f *landedFeed) drain(ctx context.Context, want uint64, buf *[]transport.PageRun) error {
	for {
		f.mu.Lock()
		got := f.got
		if got == want {
			f.sink = func(runs []transport.PageRun) error { *buf = append(*buf, runs...); return nil }
		}
		f.mu.Unlock()
		switch {
		case got == want:
			return nil
		case got > want:
			return fmt.Errorf("the transport reported %d pages landed before post-copy, the source queued %d", got, want)
		}
		select {
		case <-f.more:
		case <-f.done:
			f.mu.Lock()
			got = f.got
			f.mu.Unlock()
			if got != want {
				return fmt.Errorf("the transport's landed pages ended before post-copy, at %d of the %d the source queued: %w", got, want, f.err)
			}
		case <-ctx.Done():
			return fmt.Errorf("the transport reported %d of the %d pages the source queued before post-copy "+
				"(its landed lane may be missing writes): %w", got, want, ctx.Err())
		}
	}
}

// requester queues the fault service's page requests (Actions.Request
// must not block) and sends them, batched, as REQUEST messages on the
// urgent path from one goroutine.
type requester struct {
	mu   sync.Mutex
	runs []pageRun
	note chan struct{}
	msgs atomic.Uint64 // REQUEST messages sent
}

func newRequester() *requester { return &requester{note: make(chan struct{}, 1)} }

// Request queues pages [first, first+count); it never blocks.
func (q *requester) Request(first, count uint64) error {
	q.mu.Lock()
	q.runs = append(q.runs, pageRun{first, count})
	q.mu.Unlock()
	select {
	case q.note <- struct{}{}:
	default:
	}
	return nil
}

// clear drops what is queued: after a reconnect the service asks again
// for every page in flight.
func (q *requester) clear() {
	q.mu.Lock()
	q.runs = nil
	q.mu.Unlock()
}

// take returns the queued runs sorted and merged (overlaps too).
func (q *requester) take() []pageRun {
	q.mu.Lock()
	runs := q.runs
	q.runs = nil
	q.mu.Unlock()
	slices.SortFunc(runs, func(a, b pageRun) int { return cmp.Compare(a.First, b.First) })
	out := runs[:0]
	for _, r := range runs {
		if n := len(out); n > 0 && out[n-1].First+out[n-1].Count >= r.First {
			out[n-1].Count = max(out[n-1].Count, r.First+r.Count-out[n-1].First)
			continue
		}
		out = append(out, r)
	}
	return out
}

// run sends the queued requests until ctx ends or a send fails.
func (q *requester) run(ctx context.Context, tr transport.Transport) error {
	for {
		select {
		case <-q.note:
		case <-ctx.Done():
			return ctx.Err()
		}
		runs := q.take()
		for len(runs) > 0 {
			n := min(len(runs), maxRunsPerMsg)
			if err := tr.SendUrgent(ctx, transport.Message{Kind: msgRequest, Payload: encodeRuns(runs[:n], false)}); err != nil {
				return fmt.Errorf("send REQUEST: %w", err)
			}
			q.msgs.Add(1)
			runs = runs[n:]
		}
	}
}

// landCheck is the page check of pages that arrive after POSTCOPY: the
// hashes HASHES brings are kept, and each page that lands after it is
// compared, before the fault service may map it: an owed page's first
// copy, and a second copy of any page (one the source held at POSTCOPY
// or one already landed), which a source sends never (every owed page
// goes once) but a faulty transport may report, and which would replace
// what the check saw. absent is kept whether or not the source checks
// pages (it does not say before HASHES). The hashes and the set of
// differing pages cost 8 bytes and a bit a page of guest RAM from the
// first HASHES on (the check is a test mode); without it, the absent
// bitmap alone, and the verdict (read at COMMIT, before Resume: downtime)
// walks nothing. Until 2026-12-07 the differing set was made for every
// post-copy and counted at each verdict, a walk over a bitmap never
// written (TestLandCheckUncheckedCostsNoPages).
type landCheck struct {
	mu     sync.Mutex
	layout framework.Layout
	absent *bitmap.Bitmap // absent at POSTCOPY, not landed yet
	want   []uint64       // every page's hash from HASHES (hashFree: none); nil before the first
	bad    *bitmap.Bitmap // pages that differed on arrival; nil before the first HASHES
	nbad   uint64         // how many are set in bad
	first  uint64         // the first of them, ^0 if none
	buf    []byte         // one page, for pread
	log    func(p, h, want uint64)
}

func newLandCheck(l framework.Layout, absent []pageRun, log func(p, h, want uint64)) *landCheck {
	c := &landCheck{layout: l, absent: bitmap.New(l.Pages()), first: ^uint64(0),
		buf: make([]byte, framework.PageSize), log: log}
	for _, a := range absent {
		c.absent.SetRange(a.First, a.Count)
	}
	return c
}

// deferHash keeps page p's hash for the copies that land from now on
// and reports whether p has not landed yet (the checker then skips it).
func (c *landCheck) deferHash(p, h uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want == nil {
		c.want, c.bad = make([]uint64, c.layout.Pages()), bitmap.New(c.layout.Pages())
	}
	c.want[p] = h
	return c.absent.Test(p)
}

// landed checks the pages of a run that landed completely, reading data
// pages from the memfd (never through the guest mapping).
func (c *landCheck) landed(r transport.PageRun) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want == nil { // no HASHES yet: only note arrival
		c.absent.ClearRange(r.First, r.Count)
		return nil
	}
	for p := r.First; p < r.First+r.Count; p++ {
		c.absent.Clear(p)
		want := c.want[p]
		if want == hashFree {
			continue
		}
		h := zeroPageHash
		if r.Kind == transport.KindData {
			reg, off, _ := c.layout.Locate(p)
			if _, err := unix.Pread(reg.Fd, c.buf, int64(reg.Offset+off)); err != nil {
				return fmt.Errorf("page check: read page %d from guest RAM: %w", p, err)
			}
			h = pageHash(c.buf)
		}
		if h != want && !c.bad.Test(p) {
			c.bad.Set(p)
			c.nbad++
			c.first = min(c.first, p)
			c.log(p, h, want)
		}
	}
	return nil
}

// verdict is SETTLED's payload: pages that differed on arrival and the
// first of them (^0 if none).
func (c *landCheck) verdict() (uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nbad, c.first
}

// postcopyChunk takes one POSTCOPY chunk; after the last it sets up the
// fault service.
func (r *receiver) postcopyChunk(ctx context.Context, payload []byte) error {
	pc := r.pc
	if pc == nil {
		return fmt.Errorf("%w: POSTCOPY, but this destination said it cannot serve post-copy", errMalformed)
	}
	if pc.on {
		return fmt.Errorf("%w: POSTCOPY after its last chunk", errMalformed)
	}
	runs, last, after, queued, err := decodePostcopy(pc.absent, payload, r.layout.Pages(), pc.after)
	if err != nil {
		return err
	}
	pc.absent, pc.after, pc.queued = runs, after, queued
	if !last {
		return nil
	}
	pc.on = true
	r.mode = ModePostcopy
	sctx, cancel := context.WithTimeout(ctx, r.opt.SwitchoverTimeout)
	defer cancel()
	return pc.setup(sctx)
}

// setup turns the fault service on: after the last POSTCOPY chunk,
// before STATE.
func (pc *pcRecv) setup(ctx context.Context) error {
	r := pc.r
	// The landed lane was armed before READY, so it reports every page
	// the source queued before POSTCOPY, and nothing of post-copy's can
	// land before the source is asked or RUNNING. Runs reported after
	// the drain are post-copy's: buffered until the service exists,
	// then fed to it.
	var early []transport.PageRun
	if err := pc.sess.feed.drain(ctx, pc.queued, &early); err != nil {
		return err
	}
	u, err := uffd.Open(uffd.Needed)
	if err != nil {
		return fmt.Errorf("post-copy: %w", err)
	}
	pc.u = u
	for i, reg := range r.layout {
		g := pc.pt.GuestMemory(i)
		if uint64(len(g)) != reg.Size || len(g) == 0 {
			return fmt.Errorf("post-copy: guest memory %d is %d bytes, the region %d", i, len(g), reg.Size)
		}
		pc.m = append(pc.m, postcopy.Region{Host: sliceAddr(g), Size: reg.Size, Fd: reg.Fd, Offset: int64(reg.Offset)})
	}
	pc.req = newRequester()
	pc.svc = postcopy.New(r.layout.Pages(), &postcopy.Placer{FD: u, Map: pc.m, Requester: pc.req.Request})
	if err := pc.seed(); err != nil {
		return fmt.Errorf("post-copy: %w", err)
	}
	pc.check = newLandCheck(r.layout, pc.absent, func(p, h, want uint64) {
		r.opt.Log.Error("page check: a page arrived after the switch with other contents than the source's",
			"page", p, "hash", h, "source_hash", want)
	})
	if err := postcopy.Register(u, pc.m); err != nil {
		return fmt.Errorf("post-copy: %w", err)
	}
	lctx, stop := context.WithCancel(context.Background())
	pc.stopLoop, pc.loopDone = stop, make(chan error, 1)
	go func() { pc.loopDone <- pc.svc.Run(lctx, u, pc.m) }()
	// From here on a page the source owes faults, LoadState's reads too:
	// the VMM's Go code must reach guest RAM through the Toucher, so that
	// it waits for a page inside a system call, never in user mode, where
	// it could hold up a garbage collection and, with it, this process
	// (docs/POSTCOPY.md, "Go and page faults"). Given only at COMMIT, it
	// came after LoadState (TestPostcopyLoadGoRead). close takes it back.
	pc.pt.Postcopy(toucher{svc: pc.svc, m: pc.m})
	pc.touching = true
	// Now the lane feeds the service, the early runs first.
	pc.sess.feed.mu.Lock()
	err = pc.feedRuns(early)
	pc.feedService(pc.sess.feed)
	pc.sess.feed.mu.Unlock()
	if err != nil {
		return err
	}
	pc.startRequests()
	pc.noteArrived()
	pc.committed, pc.watchDone = make(chan struct{}), make(chan struct{})
	// What watchSetup watches is read here, not in its goroutine: the
	// receive loop may stop the session (pc.sess = nil: a stream that
	// broke before COMMIT, uncommitted) or close the userfaultfd
	// (pc.loopDone = nil) before that goroutine runs. Read there, they
	// raced with those writes, and a nil session panicked the
	// destination's process (go test -race: TestPostcopyAbortLostTwice).
	s, loopDone, committed, watchDone := pc.sess, pc.loopDone, pc.committed, pc.watchDone
	go func() {
		defer close(watchDone)
		pc.watchSetup(s, loopDone, committed)
	}()
	r.opt.Log.Info("post-copy: fault service on", "absent_pages", r.layout.Pages()-pc.held(), "absent_runs", len(pc.absent))
	return nil
}

// errPostcopySetup classes a post-copy goroutine that failed before
// COMMIT: the migration fails (the VM never ran here; the source
// resumes).
var errPostcopySetup = errors.New("post-copy failed before the switch")

// watchSetup ends the receiver's wait for the source's next message,
// and a LoadState in progress (loadState: a fault it waits in would
// otherwise wait for ever), when the fault service fails before COMMIT;
// from COMMIT on, wait watches it itself. A session that ends is not
// its business: the wait for the next message fails on its own, as in
// pre-copy (after LOADED: the handover is unknown), and loadState
// watches it while LoadState runs.
func (pc *pcRecv) watchSetup(s *pcSession, loopDone chan error, committed chan struct{}) {
	feedDone := s.feed.done
	for {
		select {
		case err := <-loopDone:
			loopDone <- err
			pc.r.stopLoop(fmt.Errorf("%w: fault loop: %w", errPostcopySetup, err))
			return
		case <-feedDone:
			if s.feed.fatal {
				pc.r.stopLoop(fmt.Errorf("%w: %w", errPostcopySetup, s.feed.err))
				return
			}
			feedDone = nil
		case <-committed:
			return
		}
	}
}

// held is the pages the destination holds at POSTCOPY.
func (pc *pcRecv) held() uint64 {
	n := pc.r.layout.Pages()
	for _, a := range pc.absent {
		n -= a.Count
	}
	return n
}

// seed tells the service which pages are held: every page outside the
// absent runs, zero-known where the memfd has a hole (SEEK_DATA /
// SEEK_HOLE, one query per extent), landed elsewhere. One call per
// extent, not per page.
func (pc *pcRecv) seed() error {
	var p uint64
	// One hole cursor per region for the whole walk: each SEEK_HOLE or
	// SEEK_DATA answer serves every gap it covers (a fresh cursor per gap
	// cost 0.9 s of downtime for 3500 gaps, BenchmarkPostcopyNonConverging).
	hs := make([]holes, len(pc.r.layout))
	for i, reg := range pc.r.layout {
		hs[i] = holes{fd: reg.Fd}
	}
	for _, a := range append(pc.absent, pageRun{First: pc.r.layout.Pages()}) {
		if err := pc.seedHeld(hs, p, a.First); err != nil {
			return err
		}
		p = a.First + a.Count
	}
	return nil
}

// seedHeld seeds held pages [from, to), finding holes with hs (one per
// region).
func (pc *pcRecv) seedHeld(hs []holes, from, to uint64) error {
	var base uint64
	for i, reg := range pc.r.layout {
		n := reg.Size / framework.PageSize
		lo, hi := max(from, base), min(to, base+n)
		h := &hs[i]
		for p := lo; p < hi; {
			off := int64(reg.Offset + (p-base)*framework.PageSize)
			hole, until := h.at(off)
			end := hi
			if u := uint64(until-int64(reg.Offset)) / framework.PageSize; until < 1<<62 && base+u < end {
				end = max(base+u, p+1)
			}
			if err := pc.svc.Hold(p, end-p, hole); err != nil {
				return err
			}
			p = end
		}
		base += n
	}
	return nil
}

// feedRuns hands landed runs to the page check, then to the service.
// Called by the landed lane with its lock held, with valid runs only
// (landedFeed.take), perhaps a part of a batch. It does not note
// arrival: the lane does, once a whole batch was taken (landedFeed.taken),
// so a run the service or the lane refuses (a write over a page the
// guest owns, one of no kind over a page held here) ends the batch
// before arrival is noted, even when the runs before it brought the
// last owed pages: waitEnd then halts the VM as for a breach after
// arrival (TestPostcopyLastPagesAndOverwrite, TestPostcopyLastPagesSplitBatch).
// Its caller notes arrival (setup, for the runs of the drain).
func (pc *pcRecv) feedRuns(runs []transport.PageRun) error {
	for _, run := range runs {
		if err := pc.check.landed(run); err != nil {
			return err
		}
		var err error
		if run.Kind == transport.KindZero {
			err = pc.svc.Zero(run.First, run.Count)
		} else {
			err = pc.svc.Landed(run.First, run.Count)
		}
		if err != nil {
			return fmt.Errorf("post-copy: pages %d+%d landed: %w", run.First, run.Count, err)
		}
	}
	pc.stall.moved()
	return nil
}

// noteArrived closes arrived once no page is absent or requested.
func (pc *pcRecv) noteArrived() {
	if pc.svc.Pending() == 0 {
		pc.arriveMu.Do(func() { close(pc.arrived) })
	}
}

// toucher is the framework.Toucher of a post-copy: Service.Populate over
// the registered mapping.
type toucher struct {
	svc *postcopy.Service
	m   postcopy.Mapping
}

// Touch implements framework.Toucher.
func (t toucher) Touch(b []byte, write bool) error {
	if len(b) == 0 {
		return nil
	}
	start := sliceAddr(b) &^ (framework.PageSize - 1)
	end := (sliceAddr(b) + uintptr(len(b)) + framework.PageSize - 1) &^ (framework.PageSize - 1)
	return t.svc.Populate(t.m, start, uint64(end-start), write)
}

// commit runs the VM here before every page arrived: COMMIT in
// post-copy. It returns once every page arrived and SETTLED went out,
// or post-copy broke for good (ErrPostcopyBroken, the VM halted).
//
// Where it does not run the VM (a fault service that failed first:
// failedEarly; the caller's cancel before the hold; a Resume that
// failed) it answers COMMIT with ABORT and tells it as a refused COMMIT
// is told (abortCommit): a source that lost the ABORT with its session
// reconnects with RESUME and is answered ABORT, where before it was
// sent once (giveUp) and that source ended handover-unknown
// (TestPostcopyFailedEarlyAbortLost, TestPostcopyResumeFailedAbortLost).
// The telling runs under Receive's own context, not ctx, which the
// fault service's end cuts (watchSetup: errPostcopySetup) and would end
// it at once; after the hold (a failed Resume), under one that a plain
// cancel of the caller's context ends, and a Cancel, though refused
// (heldCtx.telling).
func (pc *pcRecv) commit(ctx context.Context) error {
	r := pc.r
	pc.stopWatch() // from here on, wait watches the goroutines
	if err := pc.failedEarly(); err != nil {
		return pc.abortCommit(r.held, err, "this destination's post-copy fault service failed as COMMIT arrived, "+
			"and it never ran the VM: resume it on the source")
	}
	if !r.held.hold(true) { // from Resume on, a cancel would lose the guest
		// The cancel ends the telling at once, but for ABORT's send: a
		// source that loses it ends handover-unknown (abortCommit).
		return pc.abortCommit(r.held, fmt.Errorf("cancelled as COMMIT arrived, before the VM ran here: %w", r.held.Err()),
			"this destination was cancelled as COMMIT arrived and never ran the VM: resume it on the source")
	}
	if err := pc.pt.Resume(); err != nil { // its Toucher is set since setup
		// Held: a Cancel is refused from here on, as in post-copy, but
		// it ends the telling, and so does a plain cancel of the
		// caller's context (heldCtx.telling; cancelAfterHold says so).
		r.ending.Store(msgAbort)
		tctx, stop := r.held.telling()
		defer stop()
		return pc.abortCommit(tctx, fmt.Errorf("resume the migrated VM: %w", err),
			"this destination's VM would not resume at COMMIT and never ran: resume it on the source")
	}
	if err := r.ho.move(HandoverPostcopy); err != nil {
		return err
	}
	pc.resumedAt = time.Now()
	r.setPhase(PhasePostcopy)
	if err := r.send(ctx, transport.Message{Kind: msgRunning}); err != nil {
		// The source learns it from RESUME: a source that reconnects
		// committed.
		r.opt.Log.Warn("post-copy: the VM runs here, but RUNNING did not reach the source", "err", err)
		if err := pc.reconnect(ctx, err); err != nil {
			if !pc.completeWithout(err) {
				return pc.broken(err)
			}
			return pc.finish(ctx)
		}
	}
	if err := pc.wait(ctx); err != nil {
		return pc.broken(err)
	}
	return pc.finish(ctx)
}

// failedEarly reports a post-copy goroutine that failed for good before
// COMMIT: the fault loop, or the fault service refusing landed pages.
// The VM must not run here then. A session that merely broke (the landed
// lane or the request sender ended with the connection, as when the
// source's connection drops right after it wrote COMMIT) is no reason
// not to run: COMMIT arrived, the fault service works, and wait
// reconnects as it does for a break a moment later; refusing would leave
// the source waiting for a destination that quit without telling it.
func (pc *pcRecv) failedEarly() error {
	select {
	case err := <-pc.loopDone:
		pc.loopDone <- err
		return fmt.Errorf("post-copy fault loop ended before the switch: %w", err)
	case <-pc.sess.feed.done:
		if pc.sess.feed.fatal {
			return fmt.Errorf("post-copy: the fault service refused landed pages before the switch: %w", pc.sess.feed.err)
		}
	default:
	}
	return nil
}

// waitStarts, when set (tests only), is called as wait starts, before
// it looks at anything: TestPostcopyWaitOrder holds wait there until
// every page arrived and the landed lane ended, both at once.
var waitStarts func(pc *pcRecv)

// wait serves post-copy until every page arrived, reconnecting after a
// broken connection; an error means post-copy broke for good.
func (pc *pcRecv) wait(ctx context.Context) error {
	r := pc.r
	if waitStarts != nil {
		waitStarts(pc)
	}
	r.pollStats() // pre-copy's traffic, should this session break before the first tick
	// What a session that breaks had moved, polled in the background: a
	// plugin slow to answer Stats never delays noticing the break.
	poll := startStats(ctx, r.tr)
	defer func() { poll.close() }()
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	pc.stall.limit = r.opt.StallTimeout
	pc.stall.moved()
	for {
		s := pc.sess
		var stalled error
		// The select only wakes wait; what it does is waitEnd's, in one
		// order: several of these may be ready at once, and select
		// picks among them at random.
		select {
		case <-pc.arrived:
		case <-tick.C:
			if st := poll.get(); st.BytesWire >= r.seen.BytesWire { // a session's counters only grow
				r.seen = st
			}
			pc.progress()
			// Pages are due and none landed for StallTimeout: the
			// source, or this side's transport, no longer moves them
			// while the connection stays up (a stopped plugin process).
			if stalled = pc.stall.stalled(); stalled == nil || pc.svc.Pending() == 0 {
				continue
			}
		case err := <-pc.loopDone:
			pc.loopDone <- err
		case <-s.feed.done:
		case err := <-s.reqDone:
			s.reqDone <- err // stopSession reads it again
		case <-ctx.Done():
		}
		arrived, cause, err := pc.waitEnd(ctx, s, stalled)
		switch {
		case err != nil:
			return err
		case arrived:
			pc.doneAt = time.Now()
			return nil
		case cause == nil:
			continue // nothing ended after all
		}
		poll.close() // before the session it asks is closed
		if err := pc.reconnect(ctx, cause); err != nil {
			if pc.completeWithout(err) {
				return nil
			}
			return err
		}
		pc.stall.moved()
		poll = startStats(ctx, r.tr)
		r.opt.Log.Info("post-copy resumed over a new connection", "reconnects", pc.reconnects)
	}
}

// waitEnd decides what wait does once something it watches is ready
// (stalled: the stall watch's verdict, nil if it did not fire), in this
// order, whatever else is ready too:
//
//  1. The landed lane of session s refused a batch (fatal: a run that
//     claims a write it may not make, or one the fault service refused,
//     a write over a page the guest owns): guest RAM may hold a wrong
//     page, so post-copy breaks (err), even when every page arrived,
//     whether the refused run came after the last owed page or in its
//     batch (the lane notes arrival only after a whole batch was taken,
//     landedFeed.taken).
//  2. Every page arrived and was checked (arrived): post-copy completes.
//     A session that ended meanwhile (the transport going away: its
//     landed lane or request sender ended) or a fault loop that ended
//     does not halt a guest that has all its memory: finish settles and
//     unregisters without either, and tells the source on the session
//     it has (or reconnects for that).
//  3. The fault loop ended (err): post-copy breaks.
//  4. ctx ended (err).
//  5. The session ended or stalled (cause): wait reconnects.
//
// Until 2026-12-07 wait's select picked among them at random: a breach
// reported after the last owed page completed about half the time, the
// VM running on what the transport may have written over its pages,
// and a session that ended after the last page sent wait to reconnect
// instead of telling the source on it (TestPostcopyWaitOrder). What it
// cannot order: a breach the lane refuses after wait took arrival
// (finish reports it, ErrPostcopyCheck, the VM running).
func (pc *pcRecv) waitEnd(ctx context.Context, s *pcSession, stalled error) (arrived bool, cause, err error) {
	if closed(s.feed.done) && s.feed.fatal {
		return false, nil, s.feed.err
	}
	if closed(pc.arrived) {
		return true, nil, nil
	}
	if lerr, ok := peek(pc.loopDone); ok {
		return false, nil, fmt.Errorf("fault service: %w", lerr)
	}
	if ctx.Err() != nil {
		return false, nil, context.Cause(ctx)
	}
	if closed(s.feed.done) {
		return false, fmt.Errorf("landed pages: %w", s.feed.err), nil
	}
	if rerr, ok := peek(s.reqDone); ok {
		return false, rerr, nil
	}
	return false, stalled, nil
}

// closed reports whether ch is closed, without waiting.
func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// peek returns the error waiting in ch (buffered, one slot) and leaves
// it there for the next reader; ok is false if none waits. Only one
// goroutine may take from ch.
func peek(ch chan error) (err error, ok bool) {
	select {
	case err = <-ch:
		ch <- err
		return err, true
	default:
		return nil, false
	}
}

func (pc *pcRecv) progress() { pc.r.progressWith(pc.svc.Pending()) }

// reconnect resumes post-copy after the session broke: the old
// session's landed runs go to the service, the transport is opened
// again until ReconnectTimeout, the source's RESUME is answered with
// MISSING, requests in flight are asked for again. The guest keeps
// running on what it holds meanwhile. An error means it gave up.
func (pc *pcRecv) reconnect(ctx context.Context, cause error) error {
	r := pc.r
	r.opt.Log.Warn("post-copy: the connection broke; the VM keeps running here; waiting for the source to reconnect",
		"err", cause, "pages_missing", pc.svc.Pending(), "reconnect_timeout", r.opt.ReconnectTimeout)
	since := time.Now()
	deadline := since.Add(r.opt.ReconnectTimeout)
	stop := reportReconnecting(r.opt.Progress, r.progressAt(pc.svc.Pending()), r.start, since)
	defer stop() // before anything reports progress again
	// The session ends first, then its lane is drained: a lane ends only
	// once its session did, and one taken for dead with its connection
	// up (a stall, a failed call, a malformed message) would otherwise
	// be waited on for nothing, the source kept on it and the guest's
	// faults with it. The close finishes or abandons the writes in
	// flight (Transport.Close); the lane then returns what the session
	// reported (a launched plugin's queued reports end with its process),
	// and MISSING, computed after the lane ended, names every page it
	// did not: a page written but not reported is sent again, never
	// placed twice.
	r.closeSession()
	if s := pc.sess; s != nil {
		select {
		case <-s.feed.done:
		case <-time.After(pcDrainTimeout):
			// Its transport does not end it (a plugin whose process
			// stopped answers nothing, a Landed that does not return
			// on close): what it did not report is MISSING.
			s.cancel()
			<-s.feed.done
		}
		if s.feed.fatal {
			pc.stopSession()
			return s.feed.err
		}
		pc.stopSession()
	}
	pc.req.clear()
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// A fault service that failed cannot serve the guest any more: no
	// use waiting for a source.
	loopFailed := make(chan error, 1)
	if ld := pc.loopDone; ld != nil {
		go func() {
			select {
			case err := <-ld:
				ld <- err
				loopFailed <- err
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	last := cause
	for rctx.Err() == nil {
		err := pc.resume(rctx)
		if err == nil {
			pc.reconnects++
			return nil
		}
		last = err
		r.opt.Log.Warn("post-copy: reconnect failed", "err", err)
		if s := pc.sess; s != nil {
			pc.stopSession()
			if s.feed.fatal {
				return s.feed.err
			}
		}
		r.closeSession()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-rctx.Done():
		}
	}
	select {
	case err := <-loopFailed:
		return fmt.Errorf("fault service: %w", err)
	default:
	}
	return fmt.Errorf("%w within reconnect_timeout %v (%v): %w", errNoSourceResumed, r.opt.ReconnectTimeout, last, rctx.Err())
}

// uncommittedListens, when set (tests only), is called as uncommitted
// begins to listen for the source's RESUME.
var uncommittedListens func(pc *pcRecv)

// errNoSourceResumed marks a post-copy that broke because no source
// reconnected: there is nobody left to tell (tellBroken).
var errNoSourceResumed = errors.New("no source resumed post-copy")

// completeWithout reports whether post-copy ends well although no source
// reconnected within reconnect_timeout (err, reconnect's): every page is
// here (the last ones landed before the break, or none was absent), so
// the VM runs on without the source (finish) instead of halting. The
// source, which never heard SETTLED, ends handover-unknown or
// postcopy-broken; asked, this side says the guest runs here
// (docs/HANDOVER.md).
func (pc *pcRecv) completeWithout(err error) bool {
	if !errors.Is(err, errNoSourceResumed) || pc.svc.Pending() != 0 {
		return false
	}
	pc.sourceGone, pc.doneAt = true, time.Now()
	pc.r.opt.Log.Warn("post-copy: no source reconnected, but every page is here: the VM keeps running", "err", err)
	return true
}

// uncommitted handles a stream that broke (or went silent) after
// LOADED and before COMMIT in post-copy, or a LOADED or VERIFIED whose
// send failed (part of it may have reached the source), when a COMMIT
// may have been written: not while the page check is open
// (receiver.checkOpen), where this side fails or ends handover-unknown
// at once (receiver.lostAfterLoaded, checkBroke).
// The source cannot tell whether its COMMIT arrived, and in post-copy
// it cannot guess: it reconnects with RESUME until reconnect_timeout
// (recommit). This side knows it never got COMMIT, so it listens for
// that RESUME and answers ABORT, carrying that RESUME's tag
// (encodeResumeAbort: the source resumes on no other ABORT): from
// then on it never runs the VM, and the source resumes it at once
// instead of both sides staying handover-unknown. Without a RESUME
// within reconnect_timeout, or when a cancel ends the listening first
// (r.held; the error then says the cancel, not reconnect_timeout), the
// handover is unknown, as in pre-copy; but for a fault service that
// failed meanwhile without a cancel: failed (below).
//
// The ABORT is a final answer like SETTLED and BROKEN, and lingers as
// they do (tellAborted): one lost with its session (sent, never read)
// would leave the source reconnecting to nobody for reconnect_timeout
// and ending handover-unknown.
//
// It listens, and tells, under Receive's own context (r.held: a cancel
// ends both), not ctx, the receive loop's: the fault service failing
// meanwhile cuts that one (watchSetup: errPostcopySetup) and changes
// nothing of what a RESUME is answered. Until 2026-12-08 that cut ended
// the listening at once: the destination ended handover-unknown, saying
// no source had reconnected within reconnect_timeout, no ABORT sent,
// and a source whose COMMIT was lost reconnected to nobody and ended
// handover-unknown too (TestPostcopyFaultLoopEndsWhileUncommitted;
// docs/model found it). When no RESUME comes and the fault service
// failed, this side fails, as setupFailed decides, rather than ending
// handover-unknown (TestPostcopyFaultLoopEndsWhileUncommittedNobody).
func (pc *pcRecv) uncommitted(ctx context.Context, cause error) error {
	r := pc.r
	r.opt.Log.Warn("post-copy: the stream broke after LOADED and before COMMIT; the VM never ran here; "+
		"waiting for the source to reconnect and be told so", "err", cause, "reconnect_timeout", r.opt.ReconnectTimeout)
	pc.stopSession()
	r.closeSession()
	if uncommittedListens != nil {
		uncommittedListens(pc)
	}
	since := time.Now()
	rctx, cancel := context.WithTimeout(r.held, r.opt.ReconnectTimeout)
	defer cancel()
	for rctx.Err() == nil {
		err := pc.acceptResume(rctx)
		if err == nil {
			if merr := r.fail(); merr != nil { // never runs here from now on; said at once (Progress)
				return merr
			}
			why := "this destination never received COMMIT and will not run the VM: resume it on the source"
			abort := transport.Message{Kind: msgAbort, Payload: encodeResumeAbort(r.tag, why)}
			heard := pc.tellAborted(r.held, abort, abort)
			return fmt.Errorf("the migration stream broke before COMMIT (%v); the source reconnected and was told to resume the VM (%s)", cause, heard)
		}
		r.opt.Log.Warn("post-copy: waiting for the source to reconnect before COMMIT", "err", err)
		r.closeSession()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-rctx.Done():
		}
	}
	if failed := context.Cause(ctx); errors.Is(failed, errPostcopySetup) && r.held.Err() == nil {
		return fmt.Errorf("%w, while this destination listened for its source after the stream broke past LOADED (%v); "+
			"no source reconnected within reconnect_timeout %v, and the VM never ran here", failed, cause, r.opt.ReconnectTimeout) // giveUp: failed
	}
	if err := r.held.Err(); err != nil {
		// A cancel ended the listening: reconnect_timeout has not passed,
		// and the report must not say it did.
		return r.unknown(fmt.Errorf("%v; cancelled while listening for the source's RESUME, %v into reconnect_timeout %v: %w",
			cause, time.Since(since).Round(time.Millisecond), r.opt.ReconnectTimeout, err))
	}
	return r.unknown(fmt.Errorf("%v; no source reconnected within reconnect_timeout %v: %w", cause, r.opt.ReconnectTimeout, rctx.Err()))
}

// setupFailed ends a post-copy destination whose fault service failed
// before COMMIT came (cause, errPostcopySetup: watchSetup cut the
// receive loop's wait): the VM never runs here, so this side fails and
// tells the source. Before LOADED went out, while the page check is
// open, or after a verdict of differing pages, the source cannot have
// written COMMIT, and giveUp's one ABORT tells it (cause is returned).
// Otherwise it may have (its COMMIT crossing the ABORT), and in post-copy
// such a source that loses the ABORT with its session reconnects with
// RESUME (recommit): this side tells it as one that got COMMIT and does
// not act on it (abortCommit, under Receive's own context: the loop's
// is the one the failure cut). Until 2026-12-08 the ABORT went once
// (giveUp), and that source reconnected to nobody and ended
// handover-unknown after reconnect_timeout
// (TestPostcopyLaneFailedAfterLoadedAbortLost). What it costs: a source
// that reads the ABORT before it writes COMMIT (waiting for VERIFIED)
// resumes its VM and answers nothing, and this side listens in vain for
// its RESUME (lingerToTell's window, within reconnect_timeout), reported
// failed meanwhile; a cancel ends that listening. A source without the
// check writes COMMIT on LOADED without reading first, so it reads the
// ABORT as COMMIT's answer, and answers it. What it gives up, as
// failedEarly and the receive loop always did for that failure: a
// destination that holds every page and whose source died after it
// committed held the only whole copy, which failing discards (a stream
// broken after LOADED otherwise leaves it handover-unknown:
// lostAfterLoaded); the fault service's failure is taken to make the
// copy unfit (a transport that breaks its contract cannot be trusted
// with where it wrote).
func (pc *pcRecv) setupFailed(cause error) error {
	r := pc.r
	if r.ho.get() != HandoverLoaded || r.checkOpen() || (r.check != nil && r.check.bad > 0) {
		return cause // giveUp: ABORT
	}
	return pc.abortCommit(r.held, cause, "this destination's post-copy fault service failed before COMMIT came, "+
		"and it never ran the VM: resume it on the source")
}

// refuseCommit ends a post-copy whose COMMIT the page check refused
// (commitRefused, cause): the VM never ran here and never will, so this
// side fails, answers COMMIT with ABORT and tells it as uncommitted does
// (abortCommit). Before 2026-12-07 the ABORT went once (giveUp), and a
// source that missed it reconnected to nobody and ended
// handover-unknown after reconnect_timeout.
//
// It tells under Receive's own context (r.held, not yet held: a cancel
// still ends the waits), as commit does for a fault service that failed
// first: the receive loop's context, which it was handed COMMIT under,
// is cut by the fault service's end (watchSetup: errPostcopySetup), and
// a COMMIT read as the lane failed was refused with its telling ended
// at once; a source that lost the ABORT then reconnected to nobody
// (TestPostcopyRefusedCommitLaneFailedAbortLost).
func (pc *pcRecv) refuseCommit(cause error) error {
	return pc.abortCommit(pc.r.held, cause, "this destination refused COMMIT and never ran the VM: resume it on the source")
}

// abortCommit ends a post-copy whose COMMIT came, or may have been
// written, and will not be acted on here (cause; why is the reason an
// ABORT to a RESUME gives): the VM never ran here and never will, so
// this side fails, answers COMMIT with ABORT and tells it as
// uncommitted does (tellAborted, under ctx): a source whose session
// broke before it read that ABORT reconnects with RESUME (recommit),
// and is answered ABORT, carrying that RESUME's tag, until it answers.
// Its callers: a COMMIT refused (refuseCommit), commit's ends before
// the VM ran, and a fault service that failed once the source may have
// written COMMIT (setupFailed). What it cannot tell: a source
// from before 2026-12-07, which reads the ABORT but does not answer it,
// from one that missed it; it listens for that source's RESUME in vain
// (lingerToTell's window, within reconnect_timeout), reported failed
// meanwhile. When ctx has ended (a cancel) only the ABORT's send is
// left: a source that loses it ends handover-unknown, as before.
func (pc *pcRecv) abortCommit(ctx context.Context, cause error, why string) error {
	r := pc.r
	// As commit does: watchSetup cancels nothing under the telling.
	pc.stopWatch()
	// Never runs here from now on; said at once (Progress).
	if err := r.fail(); err != nil {
		return err
	}
	pc.stopSession()
	heard := pc.tellAborted(ctx, transport.Message{Kind: msgAbort, Payload: abortReason(cause)},
		transport.Message{Kind: msgAbort, Payload: encodeResumeAbort(r.tag, why)})
	return fmt.Errorf("%w; the source was told to resume the VM (%s)", cause, heard)
}

// tellAborted sends abort, the answer to COMMIT (abortCommit; from
// setupFailed, to a COMMIT that may be on its way) or to a RESUME
// before COMMIT, and waits for the source's empty ABORT in kind
// (it heard: it resumes the VM). Without that (the session broke as
// ABORT went out, or died silently with it) it listens for the source's
// next RESUMEs and answers each with again, the ABORT that answers a
// RESUME (encodeResumeAbort; lingerToTell), for as long as the source
// may take to notice the loss (lingerNotice) and the restart of a
// plugin that stopped. ctx (Receive's, still cancellable: the VM never
// ran here) ends the waits early, not abort's send (within
// SwitchoverTimeout), as giveUp's ABORT goes out whatever the cancel:
// under a cancelled ctx a transport that honours it (a launched
// plugin's call) wrote nothing, and a source whose COMMIT a cancel met
// as it was refused, answered nothing, reconnected to nobody for its
// reconnect_timeout and ended handover-unknown, its copy paused, where
// giveUp's ABORT, before 2026-12-07, had resumed it
// (TestPostcopyRefusedCommitCancelledStillAborts). It says what the
// source heard, for the error.
func (pc *pcRecv) tellAborted(ctx context.Context, abort, again transport.Message) string {
	r := pc.r
	if err := r.send(context.WithoutCancel(ctx), abort); err == nil && r.awaitSourceClose(ctx, msgAbort) {
		return "it answered"
	}
	if pc.lingerToTell(ctx, again) {
		return "it answered after reconnecting again"
	}
	return "no answer: it learns after its reconnect_timeout, or from a resolve"
}

// acceptResume opens the transport again and reads the source's RESUME.
func (pc *pcRecv) acceptResume(ctx context.Context) error {
	r := pc.r
	var rep Report
	if err := r.openSession(ctx, r.openReq, &rep); err != nil {
		return fmt.Errorf("open transport again: %w", err)
	}
	m, err := r.first(ctx) // a silent session is closed and another waited for
	if err != nil {
		return fmt.Errorf("wait for RESUME: %w", err)
	}
	if m.Kind != msgResume {
		return fmt.Errorf("%w: %s instead of RESUME on a re-opened connection", errMalformed, msgName(m.Kind))
	}
	return checkResume(m.Payload, r.layout.Pages(), r.tag)
}

// resume opens the transport again and runs the RESUME/MISSING exchange.
func (pc *pcRecv) resume(ctx context.Context) error {
	r := pc.r
	if err := pc.acceptResume(ctx); err != nil {
		return err
	}
	// Arm the new lane before MISSING: the source sends pages after it.
	// pc.svc and the check survive; only the session is new.
	pc.startSession(pc.ctx, true)
	missing := pc.svc.Missing()
	runs := make([]pageRun, len(missing))
	for i, m := range missing {
		runs[i] = pageRun{m.First, m.Count}
	}
	for {
		n := min(len(runs), maxRunsPerMsg)
		if err := r.tr.SendMessage(ctx, transport.Message{Kind: msgMissing, Payload: encodeRuns(runs[:n], n == len(runs))}); err != nil {
			return fmt.Errorf("send MISSING: %w", err)
		}
		runs = runs[n:]
		if len(runs) == 0 {
			break
		}
	}
	pc.startRequests()
	if err := pc.svc.Reconnect(); err != nil {
		return fmt.Errorf("post-copy: ask again for pages in flight: %w", err)
	}
	return nil
}

// checkResume checks a RESUME (decodeResume) for a guest of pages pages
// in the migration tagged tag. Another tag is another migration's source
// (migrationTag): errForeignResume, answered nothing.
func checkResume(b []byte, pages uint64, tag migrationTag) error {
	n, got, err := decodeResume(b)
	if err != nil {
		return err
	}
	if n != pages {
		return fmt.Errorf("%w: RESUME for a guest of %d pages, this one has %d", errMalformed, n, pages)
	}
	if got != tag {
		return fmt.Errorf("%w: its RESUME carries the tag of another migration (%x, this one's is %x); "+
			"not answered, still waiting for this migration's source", errForeignResume, got[:4], tag[:4])
	}
	return nil
}

// finish ends a post-copy in which every page arrived: the service
// settles, guest RAM leaves userfaultfd, SETTLED goes out.
func (pc *pcRecv) finish(ctx context.Context) error {
	r := pc.r
	if err := pc.svc.Settle(); err != nil {
		return pc.broken(fmt.Errorf("settle: %w", err))
	}
	if err := postcopy.Unregister(pc.u, pc.m); err != nil {
		return pc.broken(fmt.Errorf("unregister: %w", err))
	}
	r.ending.Store(msgSettled) // a cancel from here on ends the telling (cancelAfterHold)
	pc.pt.Postcopy(nil)
	pc.touching = false
	pc.closeUffd()
	bad, first := pc.check.verdict()
	payload := binary.LittleEndian.AppendUint64(nil, bad)
	payload = binary.LittleEndian.AppendUint64(payload, first)
	if !pc.sourceGone {
		pc.tellSettled(ctx, transport.Message{Kind: msgSettled, Payload: payload})
	}
	pc.stopSession()
	if err := r.ho.move(HandoverRunning); err != nil {
		return err
	}
	if pc.refused != nil {
		// Every page had arrived, and wait had taken it (waitEnd): the
		// transport reported a write after that (a page written twice,
		// a run not guest RAM's, or one of no kind over its pages). The
		// VM runs here; its RAM may hold what the transport wrote over
		// the guest's own.
		return fmt.Errorf("%w: the transport reported pages landed after every page had arrived (%w); "+
			"the VM runs here, and its RAM may hold a write over the guest's own", ErrPostcopyCheck, pc.refused)
	}
	if bad > 0 {
		return fmt.Errorf("%w: %d pages differed from the source's when they arrived "+
			"(first: page %d); the VM runs here with them", ErrPostcopyCheck, bad, first)
	}
	return nil
}

// tellSettled tells the source that every page arrived (settled,
// SETTLED) and waits for its answer in kind. A SETTLED that cannot be
// sent waits for the source to reconnect, as any break does; one sent
// but not answered may have been lost with the connection, so this side
// listens for the source's RESUMEs and answers them with SETTLED
// (lingerToTell: as long as the source may take to come back, as for
// BROKEN and ABORT). Without that, a source that never heard it would
// reconnect to nobody and report a completed post-copy as broken.
//
// The waits for a source that did not hear, the reconnect for a SETTLED
// that could not be sent included, end with a cancel of the caller's
// context (heldCtx.caller), though post-copy held: the guest runs here
// with every page and nothing of it depends on the source hearing. A
// source that then never hears SETTLED stays paused (handover-unknown or
// postcopy-broken) and never resumes: it resumes only on the ABORT that
// answers its RESUME. The wait for the answer on the session that
// carried SETTLED does not end with it (it is part of saying SETTLED to
// a source that is there, and lasts at most settledLinger): a cancel
// ignored earlier in post-copy, or a deadline passed meanwhile, would
// otherwise close that session at once and could lose SETTLED
// (TestPostcopySettledAnswerAfterIgnoredCancel).
//
// All of it ends within reconnect_timeout of its start: the reconnects
// for a SETTLED that could not be sent share that one bound with
// lingerToTell, so a peer with this migration's tag that reconnects
// again and again, its SETTLED dying each time, cannot hold it longer
// (TestPostcopySettledReconnectBounded); each reconnect once had a
// reconnect_timeout of its own. What that costs: a source whose
// connection breaks at each SETTLED for longer than that is no longer
// waited for, and ends handover-unknown or postcopy-broken, paused.
// What the bound does not cover: a send of SETTLED under way as it
// passes (switchover_timeout at most), the wait for the answer to one
// that went out (settledLinger), and the time the transport takes to
// end a session, which no context cuts short (its Close; the old
// session's landed lane, pcDrainTimeout at most).
//
// The goroutines of the session that carried SETTLED (its landed lane
// and request sender) are left running through all of it, lingerToTell
// included, and stopped by finish after: on purpose, and harmless. They
// send nothing but a REQUEST queued before every page arrived (the fault
// loop is stopped by then, nothing is queued after): the source answers
// a REQUEST with the pages it still owes only (pcSend.serve), none once
// every page arrived here, and reads none while it waits for the answer
// to RESUME or after SETTLED. They hold no plugin: the first close of
// that session (lingerToTell's) ends the lane's Landed, which returns
// what was reported, then the session's end; a launched plugin's
// Landed on a closed transport starts no process. Should the
// lane's next Landed come after lingerToTell opened a session for a
// RESUME, it asks that session until it is closed, the one lane still:
// a source sends pages only after MISSING, which lingerToTell never
// sends, so anything it reports is a transport writing over a guest
// that owns every page, which the lane refuses (pc.refused) and finish
// reports (ErrPostcopyCheck). Stopping the lane at SETTLED would not stop
// such a write, only hide it. They do not delay the report: finish's
// stopSession cancels them, and every transport call honours its
// context.
func (pc *pcRecv) tellSettled(ctx context.Context, settled transport.Message) {
	r := pc.r
	lctx, cancel := context.WithTimeout(r.held.caller(), r.opt.ReconnectTimeout)
	defer cancel()
	for {
		err := r.send(ctx, settled)
		if err == nil {
			break
		}
		// Every page is here; the source only waits to hear it.
		if rerr := pc.reconnect(lctx, fmt.Errorf("send SETTLED: %w", err)); rerr != nil {
			r.opt.Log.Warn("post-copy: every page arrived and the VM runs here, but SETTLED did not reach the source", "err", rerr)
			return
		}
	}
	if !r.awaitSourceClose(ctx, msgSettled) {
		pc.lingerToTell(lctx, settled)
	}
}

// settledLinger bounds how long the destination keeps the session open
// after SETTLED or BROKEN, for the source to answer and close first.
const settledLinger = 5 * time.Second

// awaitSourceClose keeps the session open after SETTLED or BROKEN (last)
// until the source answered with its own of the same kind (true: it
// heard), closed the session without answering, or settledLinger
// passed. Closing at once could lose the message: a source still writing
// pushed pages when this side closes fails its session on the write and
// may never read the message waiting behind it, and would then report a
// completed post-copy as broken (TestPostcopyPluginKilled did, about one
// run in forty), or reconnect to a destination that broke.
func (r *receiver) awaitSourceClose(ctx context.Context, last uint32) (answered bool) {
	lctx, cancel := context.WithTimeout(ctx, settledLinger)
	defer cancel()
	for {
		m, err := r.tr.RecvMessage(lctx)
		if err != nil {
			if lctx.Err() != nil && ctx.Err() == nil {
				r.opt.Log.Warn("post-copy: the source did not close the session within a few seconds of "+msgName(last), "waited", settledLinger)
			}
			return false
		}
		if m.Kind == last {
			return true
		}
		r.opt.Log.Warn("post-copy: message from the source after "+msgName(last)+", ignored", "kind", msgName(m.Kind))
	}
}

// broken gives post-copy up: the VM halts FIRST (threads waiting on a
// missing page would otherwise read it as zeros once the userfaultfd
// closes), then the userfaultfd closes, then the source is told
// (tellBroken). Never ABORT: the VM ran here. If Halt fails, the
// userfaultfd stays open and the Toucher set (halt, postcopy_halt.go):
// the error wraps ErrNotHalted, and BROKEN's reason says so too.
func (pc *pcRecv) broken(cause error) error {
	r := pc.r
	r.ending.Store(msgBroken) // a cancel from here on ends the telling (cancelAfterHold)
	cause = pc.halt(cause)
	pc.closeUffd() // not halted: the fault loop stops, the userfaultfd stays open
	if pc.touching && !pc.notHalted {
		pc.pt.Postcopy(nil)
		pc.touching = false
	}
	pc.stopSession()
	if err := r.ho.move(HandoverPostcopyBroken); err != nil {
		r.opt.Log.Error("post-copy broken", "err", err)
	}
	if !pc.notHalted {
		r.opt.Log.Error("post-copy broken: the VM is halted here and lacks pages the source holds", "err", cause,
			"pages_missing", pc.svc.Pending())
	}
	if !errors.Is(cause, errNoSourceResumed) {
		pc.tellBroken(cause)
	}
	return fmt.Errorf("%w: %w", ErrPostcopyBroken, cause)
}

// tellBroken tells the source, with BROKEN, that post-copy broke for
// good here, so that it reports so now rather than reconnecting for
// reconnect_timeout (10 minutes by default) to a destination that can no
// longer take pages. A source that read it answers with BROKEN of its
// own and closes. Without that answer (the session ended or was already
// broken, and the source may be about to reconnect) this side listens
// for the source's RESUMEs and answers them with BROKEN (lingerToTell:
// as long as the source may take to come back, as for SETTLED and
// ABORT). A source that reconnects later than that, or a destination
// process that died, still costs the source its whole reconnect_timeout.
// Either way the source keeps its paused copy. A cancel of the caller's
// context (heldCtx.caller) ends the listening (lingerToTell), though
// post-copy held: the guest is halted here for good and nothing of it
// depends on the source hearing. It does not end the wait for the
// answer on the session that carried BROKEN (at most settledLinger), as
// for SETTLED (TestPostcopyBrokenAnswerAfterIgnoredCancel).
func (pc *pcRecv) tellBroken(cause error) {
	r := pc.r
	broken := transport.Message{Kind: msgBroken, Payload: reason(cause)}
	// The migration's context never ends in post-copy (hold.go): each
	// wait here is bounded on its own; the listening ends with the
	// caller's.
	lctx := r.held.caller()
	if r.send(context.Background(), broken) != nil || !r.awaitSourceClose(context.Background(), msgBroken) {
		pc.lingerToTell(lctx, broken)
	}
}

// lingerToTell closes the session and listens for the source's RESUME,
// to answer it with last (BROKEN or SETTLED: how post-copy ended here;
// ABORT: it never will here) and wait for the source's answer in kind;
// answered says it came. It answers every RESUME of this migration until
// one answer comes: the source may miss last again (the session broke
// as it went out, or died silently with it). It listens for at most
// brokenLinger beyond lingerNotice plus stallRestart (350 s with the
// defaults), counted again from each RESUME answered in vain (that
// source is still there, trying), and never beyond reconnect_timeout
// from its start (counted from there, not from the break: a source
// trying since its session broke gives up earlier, so the last stretch
// may listen for nobody). The same bound for every last word: what the
// source does until it comes back does not depend on which word it
// missed. The transport is open for receiving meanwhile, as it was for
// the session; a source that reconnects never sends pages before
// MISSING. ctx ends the wait early. What it cannot tell: a source
// slower than lingerNotice to come back is not waited for. After
// SETTLED the old session's landed lane may still run meanwhile
// (tellSettled says why that is harmless); after BROKEN and ABORT it was
// stopped before.
func (pc *pcRecv) lingerToTell(ctx context.Context, last transport.Message) (answered bool) {
	r := pc.r
	r.closeSession()
	window := brokenLinger + lingerNotice(r.opt) + stallRestart
	octx, cancel := context.WithTimeout(ctx, r.opt.ReconnectTimeout)
	defer cancel()
	what := msgName(last.Kind)
	r.opt.Log.Info("post-copy: the source did not answer "+what+"; listening for it to reconnect, to tell it",
		"for", min(window, r.opt.ReconnectTimeout))
	start, deadline, told := time.Now(), time.Now().Add(window), 0
	for octx.Err() == nil && time.Now().Before(deadline) {
		took, heard := pc.tellOnce(octx, deadline, last)
		if heard {
			return true
		}
		if took { // a RESUME of this migration, answered in vain
			told++
			deadline = time.Now().Add(window)
		}
		r.closeSession()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-octx.Done():
		}
	}
	r.opt.Log.Warn("post-copy: no source reconnected to be told "+what+" and answered; it learns after its reconnect_timeout",
		"waited", time.Since(start).Round(time.Millisecond), "told_unanswered", told)
	return false
}

// tellOnce is one try of lingerToTell before deadline: it opens the
// transport and takes a RESUME of this migration (took), answers it with
// last and waits for the source's answer in kind (heard). The caller
// closes the session.
func (pc *pcRecv) tellOnce(ctx context.Context, deadline time.Time, last transport.Message) (took, heard bool) {
	r := pc.r
	lctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := pc.acceptResume(lctx); err != nil {
		return false, false
	}
	return true, r.send(lctx, last) == nil && r.awaitSourceClose(lctx, last.Kind)
}

// lingerNotice is how long a source may take to notice that the
// session that carried the destination's last word (SETTLED, BROKEN,
// or ABORT to a RESUME) broke, and to try again: its stall watch
// (StallTimeout) when only a stall tells it, or its wait for an answer
// to RESUME, SwitchoverTimeout doubled for each of its tries in a row
// that went unanswered (quietBound, up to quietMaxDoublings times: this
// side cannot count the source's tries; 320 s with the default 5 s).
func lingerNotice(opt Options) time.Duration {
	return max(opt.StallTimeout, quietBound(opt.SwitchoverTimeout, quietMaxDoublings))
}

// brokenLinger bounds how long a destination whose post-copy ended
// listens for a source to reconnect, to tell it how (lingerToTell),
// beyond the time the source may take to notice that its session broke:
// at once when it breaks, StallTimeout when it only stalls (its plugin
// stopped), then stallRestart to close that plugin and start another. A
// source that noticed tries again at once, then at least every 2 s
// (reconnectMax). A variable for tests.
var brokenLinger = 15 * time.Second

// stallRestart bounds how long a side takes to close a plugin that does
// not answer and start a new one: transport.closeTimeout (5 s),
// plugproc.killGrace (4 s) and go-plugin's own 2 s, with a margin. A
// variable for tests.
var stallRestart = 15 * time.Second

// closeUffd stops the fault loop and closes the userfaultfd, unless the
// VM could not be halted (notHalted): then it keeps it open for the life
// of the process (keepOpen), so that no thread waiting on a missing page
// is woken onto zeros.
func (pc *pcRecv) closeUffd() {
	if pc.stopLoop != nil {
		pc.stopLoop()
		<-pc.loopDone
		pc.stopLoop, pc.loopDone = nil, nil // a nil channel: selects on it wait forever
	}
	if pc.u != nil {
		if pc.notHalted {
			keepOpen(pc.u)
		} else {
			pc.u.Close()
		}
		pc.u = nil
	}
}

// stopWatch stops watchSetup, once, and waits for it to return: what
// it does, it does before COMMIT is acted on (failedEarly then sees the
// same end). Left running, it could pick a fatal end over committed at
// random after COMMIT and cancel the context wait serves post-copy
// under (TestPostcopyWaitOrder).
func (pc *pcRecv) stopWatch() {
	if pc.committed != nil {
		pc.commitMu.Do(func() { close(pc.committed) })
		<-pc.watchDone
	}
}

// close releases what is left: after a pre-copy end, a failure before
// the switch (the guest never ran here) or any end of post-copy. After a
// Halt that failed it leaves the Toucher set (a device thread that
// touches a missing page then waits in a system call, for good) and the
// userfaultfd open (closeUffd).
func (pc *pcRecv) close() {
	pc.release()
	if pc.touching && !pc.notHalted {
		pc.pt.Postcopy(nil)
		pc.touching = false
	}
}

// release is close but for the Toucher, which it leaves set: it stops
// watchSetup and the session's goroutines, then closes the userfaultfd,
// which unregisters guest RAM and wakes every fault waiting there
// (loadState, while LoadState still runs: the Target's methods are
// called one at a time, so close takes the Toucher back after).
func (pc *pcRecv) release() {
	pc.stopWatch()
	pc.stopSession()
	pc.closeUffd() // closing it unregisters guest RAM
}

// fill writes the destination's post-copy figures into rep.
func (pc *pcRecv) fill(rep *Report) {
	rep.LandedRunsDropped = pc.runsDropped.Load()
	if !pc.on || pc.svc == nil {
		return
	}
	st := pc.svc.Stats()
	rep.PagesRequested, rep.PagesZeroLocal, rep.PagesLandLocal = st.PagesRequested, st.PagesZeroLocal, st.PagesLandLocal
	rep.FaultP50US, rep.FaultP99US, rep.FaultMaxUS = int64(st.FaultP50us), int64(st.FaultP99us), int64(st.FaultMaxus)
	rep.FaultNetP50US, rep.FaultNetP99US, rep.FaultNetMaxUS = int64(st.NetP50us), int64(st.NetP99us), int64(st.NetMaxus)
	rep.Reconnects = pc.reconnects
	missing := pc.svc.Pending()
	rep.PagesMissing = &missing
	if !pc.resumedAt.IsZero() {
		end := pc.doneAt
		if end.IsZero() {
			end = time.Now()
		}
		rep.PostcopyMS = end.Sub(pc.resumedAt).Milliseconds()
	}
}

// TellBound is, for these options (defaults filled in as Receive fills
// them), how long a post-copy destination whose post-copy ended
// (SETTLED, BROKEN) or failed after the switch (ABORT) may stay
// reported as migrating while it tells its source: the last word's send
// (SwitchoverTimeout at most), the wait for the source's answer
// (settledLinger), then lingerToTell's window for a source that comes
// back. It is what a tool outside the engine (cmd/migrate's resolver)
// waits beyond the destination's reconnect_timeout. What it does not
// cover: a source that reconnects again and again without answering
// restarts lingerToTell's window, up to ReconnectTimeout from its start;
// such a destination reads as migrating for longer.
func TellBound(o Options) time.Duration {
	o.defaults()
	return o.SwitchoverTimeout + settledLinger + min(o.ReconnectTimeout, brokenLinger+lingerNotice(o)+stallRestart)
}
