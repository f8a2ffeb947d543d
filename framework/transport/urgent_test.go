package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestLane is the per-page rule of the urgent path: a bulk copy queued
// before an urgent one that already landed is dropped, one queued after
// it is written; pages not overtaken are written as they come.
func TestLane(t *testing.T) {
	var l Lane
	var wrote []PageRun
	write := func(first, n uint64) error {
		wrote = append(wrote, PageRun{First: first, Count: n, Kind: KindData})
		return nil
	}
	l.Lock()
	defer l.Unlock()
	if err := l.Bulk(1, 0, 8, write); err != nil || !slices.Equal(wrote, []PageRun{{0, 8, KindData}}) {
		t.Fatalf("batch 1 without urgent pages wrote %v, %v", wrote, err)
	}
	// Batches 2..4 are queued on the source; then pages 20 and 22..23
	// go urgently (after 4) and land first.
	l.Urgent(20, 1, 4)
	l.Urgent(22, 2, 4)
	// Urgent after a batch that is already applied: nothing to drop.
	l.Urgent(3, 1, 1)
	if l.Overtaken(3, 2) {
		t.Error("page 3 sent urgently after batch 1 (applied) would drop batch 2's copy")
	}
	wrote = nil
	if err := l.Bulk(2, 16, 8, write); err != nil {
		t.Fatal(err)
	}
	if want := []PageRun{{16, 4, KindData}, {21, 1, KindData}}; !slices.Equal(wrote, want) {
		t.Errorf("batch 2 (queued before the urgent copies) wrote %v, want %v", wrote, want)
	}
	wrote = nil
	if err := l.Bulk(4, 20, 4, write); err != nil {
		t.Fatal(err)
	}
	if want := []PageRun{{21, 1, KindData}}; !slices.Equal(wrote, want) {
		t.Errorf("batch 4 (the last one queued before) wrote %v, want %v", wrote, want)
	}
	// Batch 5 was queued after the urgent copies: it wins.
	wrote = nil
	if err := l.Bulk(5, 20, 4, write); err != nil {
		t.Fatal(err)
	}
	if want := []PageRun{{20, 4, KindData}}; !slices.Equal(wrote, want) {
		t.Errorf("batch 5 (queued after) wrote %v, want %v", wrote, want)
	}
	if len(l.rec) != 0 || len(l.fifo) != 0 {
		t.Errorf("records left once every batch before them was applied: %v %v", l.rec, l.fifo)
	}
	// A write error stops the batch and is returned.
	boom := errors.New("boom")
	if err := l.Bulk(6, 0, 1, func(uint64, uint64) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Bulk = %v, want the write's error", err)
	}
}

// TestLaneOvertakenWalks: the pages a bulk batch must skip are the same
// whether the lane walks the batch's pages or its urgent records (it
// walks whichever is shorter), for long batches and short ones.
func TestLaneOvertakenWalks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var l Lane
		l.rec = map[uint64]uint64{}
		for range rng.IntN(40) {
			l.rec[rng.Uint64N(1<<12)] = rng.Uint64N(8) + 1
		}
		seq, first := rng.Uint64N(8)+1, rng.Uint64N(1<<12)
		count := uint64(1) << rng.IntN(14)
		var want []uint64
		for p := first; p < first+count; p++ {
			if a, ok := l.rec[p]; ok && seq <= a {
				want = append(want, p)
			}
		}
		if got := l.overtaken(seq, first, count); !slices.Equal(got, want) {
			t.Fatalf("round %d: batch %d over %d+%d with records %v: overtaken %v, want %v", round, seq, first, count, l.rec, got, want)
		}
	}
}

// TestLandedQueue: a write before the first Wait is recorded for it;
// runs merge, come back at most MaxLanded at a time, and after End the
// rest comes first, then the error.
func TestLandedQueue(t *testing.T) {
	var q LandedQueue
	q.Push(PageRun{0, 1, KindData}) // before anyone asked: kept
	if got, err := q.Wait(context.Background()); err != nil || !slices.Equal(got, []PageRun{{0, 1, KindData}}) {
		t.Fatalf("first Wait = %v, %v; want the write recorded before it", got, err)
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := q.Wait(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an empty queue = %v", err)
	}
	cancel()
	q.Push(PageRun{10, 2, KindData})
	q.Push(PageRun{12, 3, KindData}) // merges
	q.Push(PageRun{15, 1, KindZero}) // another kind: a new run
	got, err := q.Wait(context.Background())
	if want := []PageRun{{10, 5, KindData}, {15, 1, KindZero}}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Wait = %v, %v; want %v", got, err, want)
	}
	for i := range MaxLanded + 3 {
		q.Push(PageRun{uint64(2 * i), 1, KindData})
	}
	q.End(ErrClosed)
	if got, err := q.Wait(context.Background()); err != nil || len(got) != MaxLanded {
		t.Fatalf("first Wait after a flood: %d runs, %v", len(got), err)
	}
	if got, err := q.Wait(context.Background()); err != nil || len(got) != 3 {
		t.Fatalf("second Wait: %d runs, %v", len(got), err)
	}
	if _, err := q.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after End = %v", err)
	}
}

// TestLandedQueueAttach: a pusher gets what was recorded before it
// attached at once, then the runs at each Deliver, merged and at most
// MaxLanded at a time, and the end once, after the last runs.
func TestLandedQueueAttach(t *testing.T) {
	var q LandedQueue
	q.Push(PageRun{0, 1, KindData}) // before anyone asked: kept
	var got [][]PageRun
	var ends []error
	q.Attach(func(runs []PageRun) { got = append(got, slices.Clone(runs)) }, func(err error) { ends = append(ends, err) })
	if want := [][]PageRun{{{0, 1, KindData}}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Attach pushed %v, want %v", got, want)
	}
	got = nil
	q.Push(PageRun{10, 2, KindData})
	q.Push(PageRun{12, 3, KindData}) // merges
	if len(got) != 0 {
		t.Fatalf("runs pushed before Deliver: %v", got)
	}
	q.Deliver()
	if want := [][]PageRun{{{10, 5, KindData}}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Deliver pushed %v, want %v", got, want)
	}
	got = nil
	for i := range MaxLanded + 3 {
		q.Push(PageRun{uint64(2 * i), 1, KindData})
	}
	q.End(ErrClosed)
	q.End(errors.New("a second end"))
	q.Push(PageRun{1, 1, KindData})
	q.Deliver()
	if len(got) != 2 || len(got[0]) != MaxLanded || len(got[1]) != 3 {
		t.Fatalf("after a flood and End: pushes of %d runs", len(got))
	}
	if len(ends) != 1 || !errors.Is(ends[0], ErrClosed) {
		t.Fatalf("ends: %v, want one ErrClosed", ends)
	}

	var late LandedQueue // attached after the end: the end still comes, once
	late.End(ErrClosed)
	ends = nil
	late.Attach(func([]PageRun) {}, func(err error) { ends = append(ends, err) })
	if len(ends) != 1 || !errors.Is(ends[0], ErrClosed) {
		t.Fatalf("ends of a queue attached after End: %v", ends)
	}
}

// TestLandedQueueUnasked: a session whose lane never starts stops
// recording at maxUnasked runs; a late first Wait or Attach then learns
// that writes were lost instead of missing them silently.
func TestLandedQueueUnasked(t *testing.T) {
	fill := func(q *LandedQueue) {
		for i := range maxUnasked + 10 {
			q.Push(PageRun{uint64(2 * i), 1, KindData}) // never adjacent: a run each
		}
	}
	var q LandedQueue
	fill(&q)
	if len(q.runs) != 0 {
		t.Fatalf("holds %d runs after the bound, want none", len(q.runs))
	}
	if _, err := q.Wait(context.Background()); !errors.Is(err, ErrLandedLost) {
		t.Fatalf("Wait after the bound = %v, want ErrLandedLost", err)
	}
	var a LandedQueue
	fill(&a)
	var ends []error
	a.Attach(func([]PageRun) { t.Error("runs pushed after the record was lost") }, func(err error) { ends = append(ends, err) })
	if len(ends) != 1 || !errors.Is(ends[0], ErrLandedLost) {
		t.Fatalf("ends of a late Attach: %v, want ErrLandedLost", ends)
	}
	var ok LandedQueue // asked in time: no bound
	if _, err := ok.Wait(canceled()); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	fill(&ok)
	if n := len(ok.runs); n != maxUnasked+10 {
		t.Fatalf("an asked queue holds %d runs, want all %d", n, maxUnasked+10)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
