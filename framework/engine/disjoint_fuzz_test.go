package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
)

// applyCase is one batch applied to a hinter of pages pages: its
// ranges (valid or not), the pages a probe saw written before it (or
// after it), and whether it belongs to the current generation (or an
// older one, or one not asked yet).
type applyCase struct {
	pages   uint64
	ranges  []hint.Range
	written []uint64
	stale   bool
	future  bool // a stale batch names a generation after the current one
	after   bool // the probe comes after the batch
}

// decodeApplyCase turns fuzz bytes into a case: byte 0 sizes RAM (1 to
// 256 pages), byte 1 says stale (bit 0), how many written pages follow
// (bits 1-4), a stale batch's generation after the current (bit 5) and
// the probe after the batch (bit 6), then written pages, then ranges of
// 2 bytes each, First and Count taken modulo a little more than RAM so
// that some are invalid (outside, empty) and many overlap.
func decodeApplyCase(data []byte) applyCase {
	if len(data) < 2 {
		return applyCase{pages: 1}
	}
	c := applyCase{pages: uint64(data[0]) + 1, stale: data[1]&1 != 0, future: data[1]&(1<<5) != 0, after: data[1]&(1<<6) != 0}
	nw := int(data[1]>>1) & 15
	data = data[2:]
	for ; nw > 0 && len(data) > 0; nw-- {
		c.written = append(c.written, uint64(data[0])%c.pages)
		data = data[1:]
	}
	for len(data) >= 2 {
		c.ranges = append(c.ranges, hint.Range{First: uint64(data[0]) % (c.pages + 4), Count: uint64(data[1]) % (c.pages + 4)})
		data = data[2:]
	}
	return c
}

// naiveMarks is what apply must leave: nothing for a stale batch, else
// every page of every valid range, minus the pages a probe saw written.
// It never merges, so a merge that widens or narrows a range differs.
func naiveMarks(c applyCase) []bool {
	want := make([]bool, c.pages)
	if c.stale {
		return want
	}
	for _, r := range c.ranges {
		if r.Check(c.pages) != nil {
			continue
		}
		for p := r.First; p < r.First+r.Count; p++ {
			want[p] = true
		}
	}
	for _, p := range c.written {
		want[p] = false
	}
	return want
}

// checkApply applies c's batch through the hinter (disjoint included)
// and compares the marks with naiveMarks, page by page, and the
// provider's counts with the batch's: invalid ranges, and valid ones
// taken or stale.
func checkApply(t *testing.T, c applyCase) {
	t.Helper()
	h := newHinter([]HintSource{source("p", &funcProvider{}, 0)}, c.pages, func(string, ...any) {})
	h.invalidate(2)
	probe := func() {
		if len(c.written) == 0 {
			return
		}
		w := bitmap.New(c.pages)
		for _, p := range c.written {
			w.Set(p)
		}
		h.probeWritten(w)
	}
	if !c.after {
		probe()
	}
	gen := uint64(2)
	switch {
	case c.stale && c.future:
		gen = 3 // a generation never asked
	case c.stale:
		gen = 1 // asked before sync 2: arrived after it
	}
	in := append([]hint.Range(nil), c.ranges...)
	h.apply(hintBatch{src: 0, gen: gen, ranges: in})
	if c.after {
		probe()
	}
	var invalid, valid uint64
	for _, r := range c.ranges {
		if r.Check(c.pages) != nil {
			invalid++
		} else {
			valid++
		}
	}
	wantRanges, wantStale := valid, uint64(0)
	if c.stale {
		wantRanges, wantStale = 0, valid
	}
	if st := h.stats[0]; st.Invalid != invalid || st.Ranges != wantRanges || st.Stale != wantStale {
		t.Fatalf("ranges %v, stale %v: counted %d invalid, %d taken, %d stale; want %d, %d, %d",
			c.ranges, c.stale, st.Invalid, st.Ranges, st.Stale, invalid, wantRanges, wantStale)
	}
	for i, r := range c.ranges {
		if in[i] != r {
			t.Fatalf("apply changed the batch: range %d is %v, was %v", i, in[i], r)
		}
	}
	want := naiveMarks(c)
	for p := uint64(0); p < c.pages; p++ {
		if got := h.marks[0].Test(p); got != want[p] {
			t.Fatalf("pages %d, ranges %v, written %v, stale %v: page %d marked %v, want %v",
				c.pages, c.ranges, c.written, c.stale, p, got, want[p])
		}
	}
	if _, ok := h.skip(c.pages - 1); ok != want[c.pages-1] {
		t.Fatalf("skip(last page) = %v, want %v", ok, want[c.pages-1])
	}
}

// FuzzApplyMerged: a batch applied through disjoint (merged when its
// ranges add up to more than RAM) marks exactly the pages the naive
// application marks: the union of its valid ranges, minus what a probe
// saw written, and nothing for a batch of an older generation. A merge
// that widened a range would skip pages nobody hinted (page loss).
func FuzzApplyMerged(f *testing.F) {
	for _, seed := range [][]byte{
		{9, 0, 0, 10, 0, 10}, // two copies of all of RAM: merged
		{99, 4, 50, 60, 40, 0, 30, 30, 5, 0, 30, 70, 10, 0, 100, 0, 100}, // written pages, gaps
		{99, 1, 0, 100, 0, 100},                     // stale: nothing
		{255, 0, 5, 3, 5, 3, 9, 1, 0, 255, 10, 0},   // empty and outside ranges mixed in
		{63, 0, 0, 32, 33, 31, 0, 32, 32, 1, 0, 64}, // adjacent, exactly touching, and one past
		{99, 1 | 1<<5, 0, 100, 0, 100},              // a generation not asked yet: nothing
		{99, 4 | 1<<6, 50, 60, 0, 100},              // written after the batch: cleared all the same
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		checkApply(t, decodeApplyCase(data))
	})
}

// TestApplyMergedRandom runs FuzzApplyMerged's property on 3000 random
// batches built to cross the merge threshold (many overlapping ranges,
// some invalid), with a fixed seed: every run checks the same cases.
func TestApplyMergedRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	merged := 0
	for i := 0; i < 3000; i++ {
		n := 2 + rnd.IntN(80)
		data := make([]byte, 2+15+2*n)
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		c := decodeApplyCase(data)
		ok, _ := hint.CheckRanges(c.ranges, c.pages)
		if len(disjoint(ok, c.pages)) != len(ok) || sumCount(ok) > c.pages {
			merged++
		}
		checkApply(t, c)
	}
	if merged < 1000 {
		t.Errorf("only %d of 3000 batches crossed the merge threshold; the cases do not test the merge", merged)
	}
}

func sumCount(rs []hint.Range) (n uint64) {
	for _, r := range rs {
		n += r.Count
	}
	return n
}
