package hint_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

func rng(first, count uint64) hint.Range { return hint.Range{First: first, Count: count} }

func TestBatcher(t *testing.T) {
	var got [][]hint.Range
	b := hint.NewBatcher(func(rs []hint.Range) error { got = append(got, rs); return nil })
	for _, r := range []hint.Range{rng(0, 1), rng(1, 2), rng(5, 1), rng(6, 0), rng(7, 1)} {
		if err := b.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	want := [][]hint.Range{{rng(0, 3), rng(5, 1), rng(7, 1)}}
	if len(got) != 1 || !slices.Equal(got[0], want[0]) || b.Pages() != 5 {
		t.Fatalf("got %v (%d pages), want %v", got, b.Pages(), want)
	}

	// Full batches: the last range waits, since the next may extend it.
	got = nil
	b = hint.NewBatcher(func(rs []hint.Range) error { got = append(got, rs); return nil })
	for i := range uint64(hint.BatchRanges) {
		b.Add(rng(2*i, 1))
	}
	b.Add(rng(2*hint.BatchRanges-1, 1)) // extends the last one
	b.Add(rng(2*hint.BatchRanges+5, 1))
	b.Flush()
	if len(got) != 2 || len(got[0]) != hint.BatchRanges-1 || len(got[1]) != 2 ||
		got[1][0] != rng(2*hint.BatchRanges-2, 2) {
		t.Fatalf("batches of %d and %d: %v", len(got[0]), len(got[1]), got[1])
	}

	// Each batch is a fresh slice: what emit kept is not written again.
	first := slices.Clone(got[0])
	b.Add(rng(1<<20, 1))
	b.Flush()
	if !slices.Equal(got[0], first) {
		t.Fatal("a later batch changed one emit kept")
	}

	boom := errors.New("boom")
	b = hint.NewBatcher(func([]hint.Range) error { return boom })
	b.Add(rng(1, 1))
	if err := b.Flush(); !errors.Is(err, boom) {
		t.Fatalf("emit error: %v", err)
	}
}
