package engine

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// flooder is a provider that, in every request, emits batch as fast as
// the engine takes it until emit fails or its context ends, as a plugin
// process that floods can (its stream stops when the engine stops
// listening).
func flooder(batch []hint.Range, emitted *atomic.Int64) *funcProvider {
	return &funcProvider{hints: func(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		for ctx.Err() == nil {
			if err := emit(batch); err != nil {
				return err
			}
			emitted.Add(1)
		}
		return ctx.Err()
	}}
}

// TestHintFlood is invariant 2 against a provider that floods: in every
// request it emits the largest batches the plugin protocol carries
// (32768 ranges), each range all of guest RAM (valid: overlaps are), as
// fast as the engine takes them, until its deadline. A batch must cost
// about one walk over RAM, not one per range, so that the backlog left
// at the deadline (up to the 64 batches the engine queues) is applied in
// moments: the migration costs about what it costs without the provider,
// not seconds more per pass. That cost is the process's CPU time, not the
// wall time: on a machine shared with other work (CI) the two runs are
// slowed by different amounts (here the run without the provider took
// 2.5 s, the flooded one 7.7 s, where a quiet machine takes 0.9 s and
// 1.1-1.5 s), while the engine's own work is what it is; the deadlines
// the flooded run waits out cost no CPU.
func TestHintFlood(t *testing.T) {
	layout := [][2]uint64{{0, 256 * mib}}
	const deadline, passes = 100 * time.Millisecond, 3
	opt := Options{MaxPasses: passes, MaxDowntime: time.Nanosecond, HintHold: 5 * time.Second}
	run := func(hints ...HintSource) (took, cpu time.Duration, rep Report) {
		src, dst := newFakeVM(t, layout...), newFakeVM(t, layout...)
		o := opt
		o.Hints = hints
		runtime.GC() // the previous run's garbage is not this one's cost
		start, cpu0 := time.Now(), cpuNow()
		srep, serr, _, rerr := migrate(t, src, dst, o, nil)
		if serr != nil || rerr != nil {
			t.Fatalf("send %v / receive %v", serr, rerr)
		}
		return time.Since(start), cpuNow() - cpu0, srep
	}
	baseWall, base, _ := run()
	pages := layout[0][1] / 4096
	batch := make([]hint.Range, 32768)
	for i := range batch {
		batch[i] = hint.Range{First: 0, Count: pages}
	}
	var emitted atomic.Int64
	took, cpu, srep := run(source("flood", flooder(batch, &emitted), deadline))
	t.Logf("%v of CPU in %v (%v in %v without the provider); %d batches emitted; %+v",
		cpu, took, base, baseWall, emitted.Load(), srep.Hints[0])
	if budget := base + 2*time.Second; cpu > budget {
		t.Errorf("migration cost %v of CPU with a flooding provider, %v without (deadline %v, %d passes): want under %v",
			cpu, base, deadline, passes, budget)
	}
	// What costs no CPU is waiting: a pass holds (HintHold, 5 s) only
	// while the provider is within its deadline. One that waited out the
	// hold would take passes*HintHold, well above what a loaded machine
	// makes of the ~1 s this run takes.
	if took >= passes*opt.HintHold {
		t.Errorf("migration took %v with a flooding provider: the passes held past its deadline (%v)", took, deadline)
	}
	// Applied: walked into the provider's marks, the cost this test
	// weighs. Whether they also spared pages (Skipped) depends on when
	// they came: seen under -race on a loaded machine, the one batch
	// emitted came after the bulk pass had sent every page.
	if srep.Hints[0].Ranges == 0 {
		t.Error("the flood's hints were never applied")
	}
}

// TestPollReturns: poll applies what had arrived when it was called and
// returns, even while a provider keeps emitting faster than batches are
// applied (the send loop and the paused switch-over call it between
// runs; before, it returned only once the channel was empty, so such a
// provider held it until its deadline).
func TestPollReturns(t *testing.T) {
	const pages = 1 << 24                           // 64 GiB: a batch costs a walk over 2 MiB of bitmap
	batch := []hint.Range{{First: 0, Count: pages}} // emitted far faster than that
	var emitted atomic.Int64
	h := newHinter([]HintSource{source("flood", flooder(batch, &emitted), 10*time.Second)}, pages, func(string, ...any) {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.invalidate(1)
	h.request(ctx, 1)
	for emitted.Load() < 64 { // the channel is full
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.poll()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second): // 64 batches take well under a second, under -race too
		cancel() // the provider stops, so poll can return
		<-done
		t.Fatal("poll did not return while a provider kept emitting")
	}
	cancel()
	h.finish()
}

// TestAskEndsWithItsCall: once Send is over (finish), a request's
// goroutine ends when its call does, even if the call kept emitting
// after it was cancelled until the queue was full, and the migration's
// context never ends (a VMM that passes context.Background): nothing
// reads the queue any more, so the end of the call must not wait for
// room in it. Before, the goroutine waited for ever, holding the queued
// batches and the hinter's bitmaps.
func TestAskEndsWithItsCall(t *testing.T) {
	release, returned := make(chan struct{}), make(chan struct{})
	var emitted atomic.Int64
	prov := &funcProvider{hints: func(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		defer close(returned)
		<-release // past the request's end: the engine cancelled it
		for emit([]hint.Range{{First: 0, Count: 1}}) == nil {
			emitted.Add(1)
		}
		return nil
	}}
	h := newHinter([]HintSource{source("late", prov, 100*time.Millisecond)}, 16, func(string, ...any) {})
	h.invalidate(1)
	h.request(context.Background(), 1)
	h.close(true)
	h.finish()
	close(release)
	<-returned
	t.Logf("%d batches emitted after the call was cancelled", emitted.Load())
	for deadline := time.Now().Add(3 * time.Second); askRunning(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request's goroutine still runs after its call returned and Send was over")
		}
	}
}

// askRunning reports whether a goroutine of hinter.ask runs.
func askRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "engine.(*hinter).ask(")
}

// TestDisjoint: a batch that overlaps more than RAM marks exactly the
// union of its ranges; one that does not is used as it is.
func TestDisjoint(t *testing.T) {
	const pages = 100
	rg := func(first, count uint64) hint.Range { return hint.Range{First: first, Count: count} }
	for _, tc := range []struct {
		in   []hint.Range
		want []hint.Range
	}{
		{[]hint.Range{rg(5, 10), rg(0, 3)}, []hint.Range{rg(5, 10), rg(0, 3)}}, // cheap: as it is
		{[]hint.Range{rg(0, 100), rg(0, 100)}, []hint.Range{rg(0, 100)}},
		{[]hint.Range{rg(50, 50), rg(0, 60), rg(10, 5)}, []hint.Range{rg(0, 100)}},
		{[]hint.Range{rg(60, 40), rg(0, 30), rg(30, 5), rg(0, 30), rg(70, 10)}, []hint.Range{rg(0, 35), rg(60, 40)}},
		{[]hint.Range{rg(99, 1), rg(0, 99), rg(0, 99)}, []hint.Range{rg(0, 100)}}, // adjacent runs join
	} {
		in := slices.Clone(tc.in)
		if got := disjoint(in, pages); !slices.Equal(got, tc.want) {
			t.Errorf("disjoint(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("disjoint changed its argument: %v", in)
		}
	}
}
