package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
)

// funcProvider is a hint provider made of a Hints function.
type funcProvider struct {
	hints   func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error
	closed  atomic.Int32
	onClose func(ctx context.Context) // runs inside Close
}

func (f *funcProvider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: "fake", Meaning: hint.MeaningFree}, nil
}
func (f *funcProvider) Schema(context.Context) (hint.Schema, error) { return nil, nil }
func (f *funcProvider) Configure(context.Context, hint.Config, hint.VM, hint.Host) error {
	return nil
}
func (f *funcProvider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	return f.hints(ctx, req, emit)
}
func (f *funcProvider) Close(ctx context.Context, _ bool) error {
	if f.onClose != nil {
		f.onClose(ctx)
	}
	f.closed.Add(1)
	return nil
}

// TestCloseAllAtOnce: ending the hint windows of slow providers costs the
// slowest one, not their sum (the report waits for it: teardown_ms): all
// four Closes run at once. Each waits, up to its context's end, for the
// other three to begin; closed one after another, none sees them.
func TestCloseAllAtOnce(t *testing.T) {
	const n = 4
	var began sync.WaitGroup
	began.Add(n)
	all := make(chan struct{})
	go func() { began.Wait(); close(all) }()
	var together atomic.Int32
	var srcs []HintSource
	for range n {
		srcs = append(srcs, HintSource{Name: "slow", Provider: &funcProvider{onClose: func(ctx context.Context) {
			began.Done()
			select {
			case <-all:
				together.Add(1)
			case <-ctx.Done():
			}
		}}})
	}
	h := newHinter(srcs, 16, func(string, ...any) {})
	h.close(true)
	if got := together.Load(); got != n {
		t.Errorf("%d of %d Closes saw the others running beside them: one after another", got, n)
	}
	for _, s := range srcs {
		if n := s.Provider.(*funcProvider).closed.Load(); n != 1 {
			t.Errorf("closed %d times", n)
		}
	}
}

func source(name string, p hint.Provider, d time.Duration) HintSource {
	return HintSource{Name: name, Provider: p, Meaning: hint.MeaningFree, Deadline: d}
}

// samePages fails the test unless source and destination RAM agree.
func samePages(t *testing.T, src, dst *fakeVM) {
	t.Helper()
	for p := uint64(0); p < src.layout.Pages(); p++ {
		if !bytes.Equal(src.mem[p*4096:(p+1)*4096], dst.mem[p*4096:(p+1)*4096]) {
			t.Fatalf("page %d differs: source %x.. destination %x..", p, src.mem[p*4096:p*4096+4], dst.mem[p*4096:p*4096+4])
		}
	}
}

// TestHintsSkipPages: hinted pages go as zero runs and are counted.
func TestHintsSkipPages(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x55)
	}
	// Pages 0..511 are "free" in the guest: their contents do not matter.
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		return emit([]hint.Range{{First: 0, Count: 512}})
	}}
	srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true, HintHold: 5 * time.Second, // the pass outruns the answer
		Hints: []HintSource{source("fake", prov, 100*time.Millisecond)}}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if srep.PagesSkipped != 512 || srep.SkippedBy["fake"] != 512 || srep.PagesSent != src.layout.Pages()-512 ||
		srep.PagesFree != 512 || srep.PagesChecked != src.layout.Pages() {
		t.Fatalf("report %+v", srep)
	}
	if dst.mem[0] != 0 || dst.mem[511*4096+100] != 0 {
		t.Error("skipped pages did not arrive as zero")
	}
	if !bytes.Equal(src.mem[512*4096:], dst.mem[512*4096:]) {
		t.Error("pages not hinted differ")
	}
	if prov.closed.Load() == 0 {
		t.Error("hint window not closed")
	}
}

// TestHintedPageReusedArrives is invariant 1 (docs/ARCHITECTURE.md#invariant-1): the guest reuses a hinted
// page after the hint was requested, at the worst moments; it must arrive
// with its final content.
func TestHintedPageReusedArrives(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run is the provider: it may write through vm before or after emitting.
		run func(vm *fakeVM, ctx context.Context, req hint.Request, emit func([]hint.Range) error) error
	}{
		{"written after the request, before the hint is applied", func(vm *fakeVM, ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			vm.write(7, byte(0x70+req.Generation)) // the guest took the page back meanwhile
			return emit([]hint.Range{{First: 0, Count: 64}})
		}},
		{"written after the hint was applied", func(vm *fakeVM, ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			err := emit([]hint.Range{{First: 0, Count: 64}})
			vm.write(9, byte(0x90+req.Generation))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p++ {
				src.write(p, 0x11)
			}
			prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
				return tc.run(src, ctx, req, emit)
			}}
			_, serr, _, rerr := migrate(t, src, dst, Options{MaxPasses: 3, MaxDowntime: time.Nanosecond, HintHold: 5 * time.Second,
				Hints: []HintSource{source("fake", prov, 100*time.Millisecond)}}, nil)
			if serr != nil || rerr != nil {
				t.Fatalf("send %v / receive %v", serr, rerr)
			}
			for _, p := range []uint64{7, 9} {
				if src.mem[p*4096+1] != 0x11 && !bytes.Equal(src.mem[p*4096:(p+1)*4096], dst.mem[p*4096:(p+1)*4096]) {
					t.Fatalf("reused page %d lost its final content", p)
				}
			}
		})
	}
}

// TestStaleHintsDropped: a batch of an older generation (it arrived after
// a later dirty sync) marks nothing and is counted. In a migration it
// happens when a batch is still queued at a sync (the sync cancels the
// call, so later ones cannot be emitted): TestHintOfOlderGenerationDropped.
func TestStaleHintsDropped(t *testing.T) {
	h := newHinter([]HintSource{source("slow", &funcProvider{}, time.Second)}, 100, func(string, ...any) {})
	h.invalidate(1)
	h.apply(hintBatch{src: 0, gen: 1, ranges: []hint.Range{{First: 0, Count: 10}}})
	h.invalidate(2) // the next dirty sync
	h.apply(hintBatch{src: 0, gen: 1, ranges: []hint.Range{{First: 50, Count: 10}}})
	if _, ok := h.skip(5); ok {
		t.Error("a mark of generation 1 survived the sync that began generation 2")
	}
	if _, ok := h.skip(55); ok {
		t.Error("a stale batch was applied")
	}
	if st := h.stats[0]; st.Stale != 1 || st.Ranges != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestMisbehavingProviders is invariant 2 (docs/ARCHITECTURE.md#invariant-2): lying, hanging and crashing
// providers cost their hints, never the migration or a page.
func TestMisbehavingProviders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hints  func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error
		check  func(t *testing.T, st HintStats)
		budget time.Duration
	}{
		{"lying", func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			return emit([]hint.Range{{First: 1 << 40, Count: 10}, {First: 5, Count: ^uint64(0)}, {First: 3, Count: 0}})
		}, func(t *testing.T, st HintStats) {
			if st.Invalid != 3*uint64(st.Requests) || st.Skipped != 0 {
				t.Errorf("%+v", st)
			}
		}, 5 * time.Second},
		{"hanging, ignoring its context", func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			time.Sleep(10 * time.Second) // past the budget by more than a loaded machine adds
			return nil
		}, func(t *testing.T, st HintStats) {}, 5 * time.Second},
		{"crashed", func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			return hint.ErrPluginGone
		}, func(t *testing.T, st HintStats) {
			if st.Status != "crashed" || st.Requests != 1 {
				t.Errorf("crashed provider asked again or not reported: %+v", st)
			}
		}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p += 2 {
				src.write(p, 0x66)
			}
			prov := &funcProvider{hints: tc.hints}
			start := time.Now()
			srep, serr, _, rerr := migrate(t, src, dst, Options{MaxPasses: 4, MaxDowntime: time.Nanosecond,
				Hints: []HintSource{source(tc.name, prov, 100*time.Millisecond)}}, nil)
			if serr != nil || rerr != nil {
				t.Fatalf("send %v / receive %v", serr, rerr)
			}
			if d := time.Since(start); d > tc.budget {
				t.Errorf("migration took %v with a %s provider", d, tc.name)
			}
			samePages(t, src, dst)
			tc.check(t, srep.Hints[0])
		})
	}
}

// TestZeroHintsAreChecked: a provider that calls pages with data "zero"
// cannot make them arrive as zeros.
func TestZeroHintsAreChecked(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < 64; p++ {
		src.write(p, 0x77)
	}
	liar := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		return emit([]hint.Range{{First: 0, Count: src.layout.Pages()}}) // "all zero"
	}}
	hs := HintSource{Name: "liar", Provider: liar, Meaning: hint.MeaningZero, Deadline: 100 * time.Millisecond}
	srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true, HintHold: 5 * time.Second, Hints: []HintSource{hs}}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	samePages(t, src, dst)
	if srep.Hints[0].Wrong < 64 || srep.PagesFree != 0 {
		t.Errorf("wrong pages %d, free %d", srep.Hints[0].Wrong, srep.PagesFree)
	}
}

// TestZeroHintsGuestWroteSince: a "zero" provider is blamed for the
// pages it called zero that held data, not for those the guest wrote
// after it looked: both travel (they hold data when sent), but only the
// first are pages_wrong, since the next dirty sync shows the others
// written since the request.
func TestZeroHintsGuestWroteSince(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(64); p < src.layout.Pages(); p++ {
		src.write(p, 0x33)
	}
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		if req.Generation != 1 {
			return nil
		}
		for p := range uint64(64) {
			if src.mem[p*4096] != 0 || src.mem[p*4096+1] != 0 {
				return fmt.Errorf("page %d is not zero", p)
			}
		}
		err := emit([]hint.Range{{First: 0, Count: 64}, // zero right now: true
			{First: 128, Count: 32}}) // a lie: they hold 0x33
		for p := range uint64(64) {
			src.write(p, 0x44) // the guest writes them before the pass reaches them
		}
		return err
	}}
	hs := HintSource{Name: "zero", Provider: prov, Meaning: hint.MeaningZero, Deadline: time.Second}
	srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true, HintHold: 5 * time.Second, Hints: []HintSource{hs}}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	samePages(t, src, dst)
	if h := srep.Hints[0]; h.Wrong != 32 || h.Skipped != 0 {
		t.Errorf("stats %+v; want pages_wrong 32 (the lie), none for the 64 pages the guest wrote since", h)
	}
}

// TestProbeWrittenNeverSkipped is invariant 1 across a probe (auto
// post-copy's dirty-rate check in the middle of a pass): a page the probe
// saw written since the generation began loses its mark, and a batch of
// the same generation that arrives after the probe cannot mark it again;
// the next sync begins a generation that may.
func TestProbeWrittenNeverSkipped(t *testing.T) {
	h := newHinter([]HintSource{source("p", &funcProvider{}, time.Second)}, 100, func(string, ...any) {})
	h.invalidate(1)
	h.apply(hintBatch{src: 0, gen: 1, ranges: []hint.Range{{First: 0, Count: 10}}})
	written := bitmap.New(100)
	written.Set(5)
	written.Set(20)
	h.probeWritten(written)
	h.apply(hintBatch{src: 0, gen: 1, ranges: []hint.Range{{First: 15, Count: 10}}})
	for p, want := range map[uint64]bool{4: true, 5: false, 16: true, 20: false, 24: true} {
		if _, ok := h.skip(p); ok != want {
			t.Errorf("page %d skippable %v, want %v", p, ok, want)
		}
	}
	h.invalidate(2)
	h.apply(hintBatch{src: 0, gen: 2, ranges: []hint.Range{{First: 20, Count: 1}}})
	if _, ok := h.skip(20); !ok {
		t.Error("a page written in generation 1 cannot be hinted in generation 2")
	}
}
