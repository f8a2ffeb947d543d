package engine

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
)

// Hint merging (invariants 1 and 2, docs/ARCHITECTURE.md#invariants).
//
// After dirty sync number g the engine asks every live provider for the
// hints of generation g, each under its own deadline, and does not wait:
// the pass starts sending at once, and batches are applied as they arrive
// (poll, between the classifier's runs). Ranges of generation g mark pages
// of the pass that sync g began as skippable; the classifier (classify.go)
// walks in page order, so a mark only changes pages the pass has not yet
// reached: pages already sent stay sent. A batch of an older generation
// (it arrived after sync g+1) is dropped and counted (stale): a page
// written after the request is in sync g+1's dirty set and travels in
// full. A sync cancels the requests still running (their hints can only
// be stale now); a provider is asked again once its cancelled call ended,
// so it has at most one call at a time. The final, paused pass asks for
// no hints: everything stale is dropped there too.
//
//	sync g ─► request(g) ─► ask ─► Provider.Hints ─► batches (chan)
//	            pass g: classifier ◄── poll/apply: marks[provider] (bitmaps)
//	            probe (auto post-copy): pages written since sync g unmarked, never marked again
//	sync g+1 ─► invalidate: marks cleared, running calls cancelled
//
// A probe (sender.probe) reads the dirty log in the middle of a pass to
// measure the dirty rate without beginning a generation, so that the
// providers' answers to request g stay useful: the pages it saw written
// lose their marks of generation g and go to the next pass (or the
// post-copy owed set), just as a write after sync g+1 would.

// HintSource is one configured provider for the engine.
type HintSource struct {
	Name     string
	Provider hint.Provider
	Meaning  hint.Meaning
	Deadline time.Duration // per request; 0 means 300 ms
}

// hintBatch is ranges from provider src for generation gen.
type hintBatch struct {
	src    int
	gen    uint64
	ranges []hint.Range
	done   bool // the request ended (err says how)
	err    error
	took   time.Duration
}

// hinter runs the providers for the sender. Only the sender's goroutine
// calls its methods; ask goroutines talk to it through batches.
type hinter struct {
	srcs    []HintSource
	stats   []HintStats
	dead    []bool
	gen     uint64
	open    bool            // the current generation was requested: answers are wanted
	ctx     context.Context // the migration's, for calls started by apply
	batches chan hintBatch
	over    chan struct{}    // closed by finish: nothing reads batches any more
	calls   []call           // per provider: its running Hints call, if any
	marks   []*bitmap.Bitmap // per provider: pages it marked skippable (current generation)
	written *bitmap.Bitmap   // pages a probe saw written in the current generation; nil if none (probeWritten)
	// suspect, per "zero" provider (nil until needed): pages of the
	// current generation it marked that held data when sent. Which were
	// its mistake is known at the next sync (settleWrong). suspected: a
	// page is set in one of them.
	suspect   []*bitmap.Bitmap
	suspected bool

	scanFrom, scanAt uint64 // nextMarked's memory: no mark in [scanFrom, scanAt)
	scanValid        bool
	log              func(msg string, args ...any)
}

// call is one provider's Hints call in flight.
type call struct {
	gen      uint64 // the generation it was asked for
	running  bool
	again    bool // cancelled by a sync: ask for the current generation when it ended
	cancel   context.CancelFunc
	deadline time.Time // when the engine stops listening to it
}

func newHinter(srcs []HintSource, pages uint64, log func(string, ...any)) *hinter {
	h := &hinter{srcs: srcs, dead: make([]bool, len(srcs)), calls: make([]call, len(srcs)),
		batches: make(chan hintBatch, 64), over: make(chan struct{}), log: log}
	for _, s := range srcs {
		h.stats = append(h.stats, HintStats{Name: s.Name, Meaning: s.Meaning.String(), Status: HintOK})
		h.marks = append(h.marks, bitmap.New(pages))
	}
	return h
}

// request asks every live provider for generation gen (the current one,
// begun by invalidate) without waiting for an answer. A provider whose
// cancelled call has not ended yet is asked when it has (apply).
func (h *hinter) request(ctx context.Context, gen uint64) {
	h.gen, h.open, h.ctx = gen, true, ctx
	for i := range h.srcs {
		switch {
		case h.dead[i]:
		case h.calls[i].running:
			h.calls[i].again = true
		default:
			h.start(ctx, i)
		}
	}
}

// start runs one Hints call of provider i for the current generation.
func (h *hinter) start(ctx context.Context, i int) {
	deadline := time.Now().Add(h.deadline(i))
	hctx, cancel := context.WithDeadline(ctx, deadline)
	h.calls[i] = call{gen: h.gen, running: true, cancel: cancel, deadline: deadline}
	h.stats[i].Requests++
	h.stats[i].DeadlineMS = h.deadline(i).Milliseconds()
	go h.ask(ctx, hctx, i, h.gen, deadline)
}

// ask runs one Hints call under hctx (its deadline, or a sync's cancel);
// its batches and its end go to h.batches. A provider that ignores its
// context is no longer listened to after the deadline (poll drops its
// late batches as stale or ignores them after finish); its goroutine ends
// when the call does, whether or not anyone still reads h.batches.
func (h *hinter) ask(ctx, hctx context.Context, i int, gen uint64, deadline time.Time) {
	start := time.Now()
	send := func(b hintBatch) error {
		// Past the deadline nothing is listened to. A batch emitted after a
		// sync cancelled the call still gets in when there is room, to be
		// counted (it is stale, never applied); after finish, nothing does.
		if err := hctx.Err(); errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		select {
		case <-h.over:
			return hctx.Err()
		default:
		}
		select {
		case h.batches <- b:
			return nil
		default:
		}
		select {
		case h.batches <- b:
			return nil
		case <-hctx.Done():
			return hctx.Err()
		}
	}
	err := h.srcs[i].Provider.Hints(hctx, hint.Request{Generation: gen, Deadline: deadline}, func(r []hint.Range) error {
		return send(hintBatch{src: i, gen: gen, ranges: append([]hint.Range(nil), r...)})
	})
	// The end marker must get through even after the deadline (and,
	// when there is room, after the migration's end); once finish is
	// over nobody reads it, and the migration's ctx may never end.
	end := hintBatch{src: i, gen: gen, done: true, err: err, took: time.Since(start)}
	select {
	case h.batches <- end:
		return
	default:
	}
	select {
	case h.batches <- end:
	case <-ctx.Done():
	case <-h.over:
	}
}

// poll applies what had arrived when it was called, without waiting;
// cheap when nothing had, so the send loop calls it between runs. It
// takes no more than the channel held: a provider that keeps emitting
// cannot keep it (and the paused switch-over that polls) from returning.
func (h *hinter) poll() {
	for n := len(h.batches); n > 0; n-- { // only this goroutine receives
		h.apply(<-h.batches)
	}
}

// apply takes one batch: ranges of the current generation mark pages;
// an end marker frees the provider for its next request.
func (h *hinter) apply(b hintBatch) {
	st := &h.stats[b.src]
	if b.done {
		c := &h.calls[b.src]
		if c.running {
			c.cancel()
			c.running = false
		}
		h.requestEnded(b)
		if c.again && h.open && !h.dead[b.src] && h.ctx.Err() == nil {
			h.start(h.ctx, b.src)
		}
		return
	}
	// Malformed is a property of the ranges, whatever their generation.
	ok, dropped := hint.CheckRanges(b.ranges, h.marks[b.src].Len())
	st.Invalid += dropped
	if b.gen != h.gen {
		st.Stale += uint64(len(ok))
		return
	}
	h.scanValid = false
	m := h.marks[b.src]
	st.Ranges += uint64(len(ok))
	for _, r := range disjoint(ok, m.Len()) {
		m.SetRange(r.First, r.Count)
		if h.written == nil {
			continue
		}
		for end, p := r.First+r.Count, h.written.NextSetIn(r.First, r.First+r.Count); p < end; p = h.written.NextSetIn(p+1, end) {
			m.Clear(p)
		}
	}
}

// disjoint returns ranges (valid for a guest of pages pages) or, when
// they overlap so much that marking them one by one would cost more than
// marking all of RAM, the same pages as sorted, merged ranges: a batch
// then costs at most its sort plus one walk over RAM, however a provider
// repeats itself (32768 copies of all of RAM fit in one message).
// ranges is never modified.
func disjoint(ranges []hint.Range, pages uint64) []hint.Range {
	var sum uint64
	for _, r := range ranges {
		if sum += r.Count; sum > pages {
			break
		}
	}
	if sum <= pages { // cheap as it is: at most one walk over RAM
		return ranges
	}
	rs := slices.Clone(ranges)
	if !slices.IsSortedFunc(rs, byFirst) {
		slices.SortFunc(rs, byFirst)
	}
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.First > last.First+last.Count {
			out = append(out, r)
			continue
		}
		last.Count = max(last.Count, r.First+r.Count-last.First)
	}
	return out
}

func byFirst(a, b hint.Range) int { return cmp.Compare(a.First, b.First) }

// probeWritten takes the pages a probe of the dirty log saw written
// since the current generation began (the probe is no new generation:
// sender.probe). None of them may be skipped on this generation's
// hints any more, whether the mark came before the probe or comes after
// it: their marks are dropped now and later batches never set them.
// Pages written after the probe are in the next sync's dirty set, as
// for any hint.
func (h *hinter) probeWritten(d *bitmap.Bitmap) {
	if h.written == nil {
		h.written = bitmap.New(d.Len())
	}
	h.written.Or(d)
	for _, m := range h.marks {
		m.AndNot(d)
	}
	h.scanValid = false
}

// wrongSent records that provider who's "zero" marks on [first,
// first+n) met pages that held data when sent.
func (h *hinter) wrongSent(who int, first, n uint64) {
	if h.suspect == nil {
		h.suspect = make([]*bitmap.Bitmap, len(h.srcs))
	}
	if h.suspect[who] == nil {
		h.suspect[who] = bitmap.New(h.marks[who].Len())
	}
	h.suspect[who].SetRange(first, n)
	h.suspected = true
}

// settleWrong counts in pages_wrong the suspect pages of the generation
// a sync ends that nobody wrote since it began: dirty is the sync's
// bitmap once its harvest is in (sender.sync; it is only read), h.written
// what probes saw in between. Such a page held its data when the
// provider looked, after the request: the provider's mistake. A page
// written since may have read as zero then; it is not counted
// (pages_wrong is a lower bound of a provider's mistakes, and an honest
// provider's is 0).
func (h *hinter) settleWrong(dirty *bitmap.Bitmap) {
	h.suspected = false
	for i, b := range h.suspect {
		if b == nil {
			continue
		}
		b.AndNot(dirty)
		if h.written != nil {
			b.AndNot(h.written)
		}
		h.stats[i].Wrong += b.Count()
		b.ClearAll()
	}
}

// hold waits, applying what arrives, until no call for the current
// generation is running within its deadline, or d passed (Options.HintHold).
func (h *hinter) hold(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for h.answering() {
		select {
		case b := <-h.batches:
			h.apply(b)
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// answering reports whether a call for the current generation (or one
// that is asked again when its cancelled call ends) may still answer.
func (h *hinter) answering() bool {
	now := time.Now()
	for _, c := range h.calls {
		if c.running && (c.gen == h.gen || c.again) && now.Before(c.deadline) {
			return true
		}
	}
	return false
}

// collect cancels the calls still running and applies what they send
// until they end or their deadlines pass: every answer is counted before
// the report (finish). Nothing it applies can skip a page (no pass follows).
func (h *hinter) collect() {
	h.open = false
	var last time.Time
	for i := range h.calls {
		if c := &h.calls[i]; c.running {
			c.cancel()
			c.again = false
			if c.deadline.After(last) {
				last = c.deadline
			}
		}
	}
	var cancelled <-chan struct{} // a call's end may be lost once the migration's ctx ended
	if h.ctx != nil {
		cancelled = h.ctx.Done()
	}
	t := time.NewTimer(time.Until(last))
	defer t.Stop()
	for h.running() {
		select {
		case b := <-h.batches:
			h.apply(b)
		case <-t.C:
			return
		case <-cancelled:
			h.poll()
			return
		}
	}
	h.poll()
}

// running reports whether a call is still running and within its deadline.
func (h *hinter) running() bool {
	now := time.Now()
	for _, c := range h.calls {
		if c.running && now.Before(c.deadline) {
			return true
		}
	}
	return false
}

// skip reports whether page p may go as a zero run, and for whom: the
// first provider (in configuration order) that marked it.
func (h *hinter) skip(p uint64) (int, bool) {
	for i, m := range h.marks {
		if m.Test(p) {
			return i, true
		}
	}
	return 0, false
}

// extent is how many pages from p (before end) provider who, which marked
// p, keeps marking before another provider ahead of it in configuration
// order takes over: word-at-a-time, so a hinted stretch costs its words.
func (h *hinter) extent(who int, p, end uint64) uint64 {
	end = h.marks[who].NextClearIn(p, end)
	for _, m := range h.marks[:who] {
		end = m.NextSetIn(p, end)
	}
	return end - p
}

// nextMarked is the first page in [p, end) some provider marked, or end.
// Passes ask in increasing order, so the answer is remembered until the
// next batch is applied: a scan reads each word once per pass.
func (h *hinter) nextMarked(p, end uint64) uint64 {
	if len(h.marks) == 0 {
		return end
	}
	if h.scanValid && p >= h.scanFrom && p < h.scanAt {
		return min(h.scanAt, end)
	}
	q := end
	for _, m := range h.marks {
		q = m.NextSetIn(p, q)
	}
	h.scanFrom, h.scanAt, h.scanValid = p, q, true
	return q
}

// invalidate begins generation gen (a dirty sync just began a new epoch):
// every mark is dropped and the calls still running are cancelled, since
// whatever they send now is stale.
func (h *hinter) invalidate(gen uint64) {
	h.gen, h.open = gen, false
	for _, m := range h.marks {
		m.ClearAll()
	}
	if h.written != nil {
		h.written.ClearAll()
	}
	h.scanValid = false
	for i := range h.calls {
		if c := &h.calls[i]; c.running {
			c.cancel()
			c.again = false
		}
	}
}

// close ends every provider's hint window.
func (h *hinter) close(final bool) {
	var wg sync.WaitGroup
	for i, s := range h.srcs {
		dead := h.dead[i]
		wg.Go(func() { // all at once: a hung provider costs closeTimeout, not one per provider
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			defer cancel()
			if err := s.Provider.Close(ctx, final); err != nil && !dead {
				h.log("closing hint provider", "provider", s.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

// closeTimeout bounds a provider's Close (its hint window ending: the
// balloon provider lets the guest take its pages back).
const closeTimeout = 5 * time.Second
