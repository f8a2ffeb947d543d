package engine

import (
	"context"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// Hint merging (invariants 1 and 2, docs/ARCHITECTURE.md#invariants).
//
// After dirty sync number g the engine asks every live provider for the
// hints of generation g, each under its own deadline, and waits for the
// answers until every provider finished or its deadline passed. Ranges of
// generation g mark pages of the pass that sync g began as skippable: when
// the pass reaches such a page it sends a zero run instead of reading it.
// A batch that arrives after sync g+1 is dropped and counted (stale): a
// page written after the request is in sync g+1's dirty set and travels
// in full. The final, paused pass asks for no hints: everything stale is
// dropped there too.

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

// hinter runs the providers for the sender.
type hinter struct {
	srcs    []HintSource
	stats   []HintStats
	dead    []bool
	pending int // requests of the current generation still running
	gen     uint64
	batches chan hintBatch
	reason  []uint8 // per page: 0 none, i+1 skippable thanks to provider i (current generation)

	scanFrom, scanAt uint64 // nextMarked's memory: no mark in [scanFrom, scanAt)
	scanValid        bool
	open             []map[uint64]bool // per provider: generations asked and not ended (hintstats.go)
	log              func(msg string, args ...any)
}

func newHinter(srcs []HintSource, pages uint64, log func(string, ...any)) *hinter {
	h := &hinter{srcs: srcs, dead: make([]bool, len(srcs)), batches: make(chan hintBatch, 64), log: log}
	for _, s := range srcs {
		h.stats = append(h.stats, HintStats{Name: s.Name, Meaning: s.Meaning.String(), Status: HintOK})
	}
	if len(srcs) > 0 {
		h.reason = make([]uint8, pages)
	}
	return h
}

// request starts generation gen: forget the previous generation's marks
// and ask every live provider asynchronously.
func (h *hinter) request(ctx context.Context, gen uint64) {
	h.gen = gen
	clear(h.reason)
	h.scanValid = false
	for i := range h.srcs {
		if h.dead[i] {
			continue
		}
		h.pending++
		h.opened(i, gen)
		go h.ask(ctx, i, gen, time.Now().Add(h.deadline(i)))
	}
}

// ask runs one Hints call; its batches and its end go to h.batches. A
// provider that ignores its context is abandoned at the deadline (wait
// stops counting it); its goroutine ends when the call does.
func (h *hinter) ask(ctx context.Context, i int, gen uint64, deadline time.Time) {
	start := time.Now()
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	send := func(b hintBatch) error {
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
	// The end marker must get through even after the deadline.
	select {
	case h.batches <- hintBatch{src: i, gen: gen, done: true, err: err, took: time.Since(start)}:
	case <-ctx.Done():
	}
}

// wait collects answers until every request of the current generation
// ended or the longest deadline passed.
func (h *hinter) wait(ctx context.Context) {
	if h.pending == 0 {
		return
	}
	var longest time.Duration
	for _, s := range h.srcs {
		longest = max(longest, s.Deadline)
	}
	if longest <= 0 {
		longest = 300 * time.Millisecond
	}
	t := time.NewTimer(longest + 20*time.Millisecond)
	defer t.Stop()
	for h.pending > 0 {
		select {
		case b := <-h.batches:
			h.apply(b)
		case <-t.C:
			h.abandonPending()
			return
		case <-ctx.Done():
			return
		}
	}
}

// drain applies whatever arrived, without waiting.
func (h *hinter) drain() {
	for {
		select {
		case b := <-h.batches:
			h.apply(b)
		default:
			return
		}
	}
}

// abandonPending stops waiting for requests still running past their
// deadline; their end markers are counted when they come (requestEnded),
// or as hung when Send ends (finish).
func (h *hinter) abandonPending() {
	h.pending = 0
}

func (h *hinter) apply(b hintBatch) {
	st := &h.stats[b.src]
	if b.done {
		if b.gen == h.gen && h.pending > 0 {
			h.pending--
		}
		h.requestEnded(b)
		return
	}
	if b.gen != h.gen {
		st.Stale += uint64(len(b.ranges))
		return
	}
	h.scanValid = false
	ok, dropped := hint.CheckRanges(b.ranges, uint64(len(h.reason)))
	st.Invalid += dropped
	for _, r := range ok {
		st.Ranges++
		for p := r.First; p < r.First+r.Count; p++ {
			if h.reason[p] == 0 {
				h.reason[p] = uint8(b.src + 1)
			}
		}
	}
}

// skip reports whether page p may go as a zero run, and for whom.
func (h *hinter) skip(p uint64) (int, bool) {
	if h.reason == nil || h.reason[p] == 0 {
		return 0, false
	}
	return int(h.reason[p]) - 1, true
}

// extent is how many pages from p (before end) carry p's mark.
func (h *hinter) extent(p, end uint64) uint64 {
	m, q := h.reason[p], p+1
	for q < end && h.reason[q] == m {
		q++
	}
	return q - p
}

// nextMarked is the first page in [p, end) some provider marked, or end.
// Passes ask in increasing order, so the last answer is remembered: a scan
// covers each page once per pass (marks a late batch adds ahead of the
// remembered answer only cost them credit, never correctness).
func (h *hinter) nextMarked(p, end uint64) uint64 {
	if h.reason == nil {
		return end
	}
	if h.scanValid && p >= h.scanFrom && p <= h.scanAt {
		return min(h.scanAt, end)
	}
	q := p
	for q < uint64(len(h.reason)) && h.reason[q] == 0 {
		q++
	}
	h.scanFrom, h.scanAt, h.scanValid = p, q, true
	return min(q, end)
}

// invalidate drops every mark: a dirty sync just began a new epoch.
func (h *hinter) invalidate(gen uint64) {
	h.gen = gen
	clear(h.reason)
	h.scanValid = false
	h.pending = 0
}

// close ends every provider's hint window.
func (h *hinter) close(final bool) {
	for i, s := range h.srcs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Provider.Close(ctx, final); err != nil && !h.dead[i] {
			h.log("closing hint provider", "provider", s.Name, "err", err)
		}
		cancel()
	}
}
