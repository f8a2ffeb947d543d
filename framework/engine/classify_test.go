package engine

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestClassifier checks the classifier against a page-by-page model:
// random holes, zero and data pages in two regions of one memfd, marks of
// a "free" and a "zero" provider, a random to-send set and random budgets.
// Every page of the set is yielded once, in order, with the kind the model
// gives it; no page outside the set is; data runs respect the budget.
func TestClassifier(t *testing.T) {
	const (
		hole = iota
		zero
		data
	)
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		src := newFakeVM(t, [2]uint64{0, 1 * mib}, [2]uint64{1 << 32, 1 * mib})
		pages := src.layout.Pages()
		content := make([]int, pages)
		for p := uint64(0); p < pages; {
			n, kind := 1+r.Uint64N(40), r.IntN(3)
			for q := p; q < min(p+n, pages); q++ {
				content[q] = kind
				switch kind {
				case zero:
					src.mem[q*4096+8] = 1 // populated ...
					src.mem[q*4096+8] = 0 // ... and zero
				case data:
					src.mem[q*4096+4095] = 0x42
				}
			}
			p += n
		}
		h := newHinter([]HintSource{
			{Name: "free", Meaning: hint.MeaningFree, Provider: &funcProvider{}},
			{Name: "zero", Meaning: hint.MeaningZero, Provider: &funcProvider{}},
		}, pages, func(string, ...any) {})
		h.invalidate(1)
		for i := 0; i < 2; i++ {
			var rs []hint.Range
			for k := 0; k < 6; k++ {
				rs = append(rs, hint.Range{First: r.Uint64N(pages), Count: 1 + r.Uint64N(60)})
			}
			h.apply(hintBatch{src: i, gen: 1, ranges: rs})
		}
		set := bitmap.New(pages)
		for k := 0; k < 10; k++ {
			set.SetRange(r.Uint64N(pages), r.Uint64N(200))
		}
		want := func(p uint64) (runKind, int) {
			if who, ok := h.skip(p); ok {
				if who == 1 && content[p] == data {
					return runWrong, who
				}
				return runHinted, who
			}
			return [...]runKind{hole: runHole, zero: runZero, data: runData}[content[p]], 0
		}

		s := &sender{layout: src.layout, hints: h}
		for i := range src.layout {
			s.mem = append(s.mem, src.Memory(i))
			s.holes = append(s.holes, holes{fd: src.layout[i].Fd})
			s.base = append(s.base, uint64(i)*(mib/4096))
		}
		c := s.classify(set)
		next := uint64(0)
		for {
			budget := 1 + r.Uint64N(8)
			run, ok := c.next(budget)
			if !ok {
				break
			}
			if run.count == 0 || run.first < next {
				t.Fatalf("seed %d: run %+v after page %d", seed, run, next)
			}
			if (run.kind == runData || run.kind == runWrong) && run.count > budget {
				t.Fatalf("seed %d: run %+v over budget %d", seed, run, budget)
			}
			for q := next; q < run.first; q++ {
				if set.Test(q) {
					t.Fatalf("seed %d: page %d of the set skipped (next run %+v)", seed, q, run)
				}
			}
			for q := run.first; q < run.first+run.count; q++ {
				kind, who := want(q)
				if !set.Test(q) || kind != run.kind || ((kind == runHinted || kind == runWrong) && who != run.who) {
					t.Fatalf("seed %d: page %d (content %d, set %v) in run %+v, want kind %d by %d", seed, q, content[q], set.Test(q), run, kind, who)
				}
			}
			next = run.first + run.count
		}
		if p := set.NextSet(next); p < pages {
			t.Fatalf("seed %d: page %d of the set never classified", seed, p)
		}
	}
}

// TestHintMidPass: a hint that arrives while the bulk pass runs skips the
// pages the pass has not reached, never the ones it already sent (they
// arrive with their data), and no page is lost.
func TestHintMidPass(t *testing.T) {
	src, dst := newFakeVM(t, [2]uint64{0, 16 * mib}), newFakeVM(t, [2]uint64{0, 16 * mib})
	pages := src.layout.Pages() // 4096: two batches of data
	for p := uint64(0); p < pages; p++ {
		src.write(p, 0x5b)
	}
	firstBatch, emitted := make(chan struct{}), make(chan struct{})
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		if req.Generation != 1 {
			return nil
		}
		<-firstBatch // the pass has sent its first batch
		err := emit([]hint.Range{{First: 0, Count: pages}})
		close(emitted)
		return err
	}}
	var calls atomic.Int32
	srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true,
		Hints: []HintSource{source("mid", prov, 5*time.Second)}}, func(p *pipe) {
		p.failPages = func([]transport.PageRun) error {
			if calls.Add(1) == 1 {
				close(firstBatch)
				<-emitted // the hint is in before the pass classifies on
			}
			return nil
		}
	})
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if srep.PagesSent != batchPages || srep.PagesSkipped != pages-batchPages || srep.PagesFree != pages-batchPages {
		t.Errorf("sent %d, skipped %d, free %d; want %d sent before the hint and the rest skipped",
			srep.PagesSent, srep.PagesSkipped, srep.PagesFree, batchPages)
	}
	if !bytes.Equal(src.mem[:batchPages*4096], dst.mem[:batchPages*4096]) {
		t.Error("pages sent before the hint arrived differ")
	}
	if dst.mem[batchPages*4096+1] != 0 || dst.mem[(pages-1)*4096+1] != 0 {
		t.Error("pages hinted before the pass reached them arrived with data")
	}
}

// TestHintOfOlderGenerationDropped is invariant 1
// (docs/ARCHITECTURE.md#invariant-1) in a migration: a provider's answer
// for generation 1 that reaches the engine only after the next dirty sync
// skips nothing, not even the pages written meanwhile.
func TestHintOfOlderGenerationDropped(t *testing.T) {
	src, dst := twoRegions(t)
	pages := src.layout.Pages()
	for p := uint64(0); p < pages; p++ {
		src.write(p, 0x21)
	}
	release, emitted := make(chan struct{}), make(chan struct{})
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		if req.Generation != 1 {
			return nil
		}
		<-release
		err := emit([]hint.Range{{First: 0, Count: pages}})
		close(emitted)
		return err
	}}
	src.onSync = func(n int) {
		if n == 2 { // the sync that ends the bulk pass: generation 1 is over
			close(release)
			<-emitted // in the engine's queue, not applied yet
		}
	}
	var once sync.Once
	srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true,
		Hints: []HintSource{source("slow", prov, 5*time.Second)}}, func(p *pipe) {
		p.failPages = func([]transport.PageRun) error {
			once.Do(func() { // the guest writes during the bulk pass
				for q := uint64(0); q < pages; q += 7 {
					src.write(q, 0x99)
				}
			})
			return nil
		}
	})
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	samePages(t, src, dst)
	if st := srep.Hints[0]; srep.PagesSkipped != 0 || st.Stale != 1 || st.Ranges != 0 {
		t.Errorf("skipped %d, hint stats %+v; want the stale range dropped", srep.PagesSkipped, st)
	}
}

// TestLateProviderNeverDelaysPass: a provider that takes its whole
// deadline does not hold the bulk pass: the first pages go out at once,
// and the migration ends long before the deadline (the next sync cancels
// the call).
func TestLateProviderNeverDelaysPass(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x31)
	}
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		<-ctx.Done() // answers nothing until told to stop
		return ctx.Err()
	}}
	start := time.Now()
	var first atomic.Int64
	srep, serr, _, rerr := migrate(t, src, dst, Options{Hints: []HintSource{source("late", prov, 10*time.Second)}}, func(p *pipe) {
		p.failPages = func([]transport.PageRun) error {
			first.CompareAndSwap(0, int64(time.Since(start)))
			return nil
		}
	})
	took := time.Since(start)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	samePages(t, src, dst)
	// At once (milliseconds), with room for a loaded machine: a pass
	// held for the provider would take its 10 s.
	if f := time.Duration(first.Load()); f == 0 || f > 4*time.Second || took > 5*time.Second {
		t.Errorf("first pages after %v, migration %v, with a provider whose deadline is 10s", f, took)
	}
	if st := srep.Hints[0]; st.Status != "ok" || st.Requests < 1 {
		t.Errorf("late provider %+v", st)
	}
}

// TestHintHold: with Options.HintHold a pass holds its first page for a
// provider still answering, up to the hold and never past the provider's
// deadline; an answer within the hold covers the first pages.
func TestHintHold(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     time.Duration // when the provider answers
		hold       time.Duration
		skipped    bool
		min, limit time.Duration // bounds on the first SendPages
		deadline   time.Duration
	}{
		{"answer within the hold", 50 * time.Millisecond, 5 * time.Second, true, 50 * time.Millisecond, 4 * time.Second, 4 * time.Second},
		// The answer comes long after the migration ended, however loaded
		// the machine; a pass held for it would start at 8 s.
		{"hold shorter than the answer", 8 * time.Second, 100 * time.Millisecond, false, 100 * time.Millisecond, 5 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			pages := src.layout.Pages()
			for p := uint64(0); p < pages; p++ {
				src.write(p, 0x41)
			}
			prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
				select {
				case <-time.After(tc.answer):
					return emit([]hint.Range{{First: 0, Count: 256}})
				case <-ctx.Done():
					return ctx.Err()
				}
			}}
			start := time.Now()
			var first atomic.Int64
			srep, serr, _, rerr := migrate(t, src, dst, Options{HintHold: tc.hold,
				Hints: []HintSource{source("p", prov, tc.deadline)}}, func(p *pipe) {
				p.failPages = func([]transport.PageRun) error {
					first.CompareAndSwap(0, int64(time.Since(start)))
					return nil
				}
			})
			if serr != nil || rerr != nil {
				t.Fatalf("send %v / receive %v", serr, rerr)
			}
			if f := time.Duration(first.Load()); f < tc.min || f > tc.limit {
				t.Errorf("first pages after %v, want within [%v, %v]", f, tc.min, tc.limit)
			}
			if got := srep.PagesSkipped == 256; got != tc.skipped {
				t.Errorf("skipped %d pages", srep.PagesSkipped)
			}
		})
	}
}
