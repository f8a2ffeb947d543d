package pagemap

import (
	"cmp"
	"slices"

	"github.com/ferryvm/ferry/framework/hint"
)

// maxBatch is the most ranges one emit call carries (the interface asks
// for "at most a few thousand"; 2048 ranges are 32 KiB on the wire).
const maxBatch = 2048

// batcher coalesces ranges that arrive in increasing page order and hands
// them to emit maxBatch at a time. Every batch is a fresh slice: emit may
// keep it.
type batcher struct {
	emit  func([]hint.Range) error
	buf   []hint.Range
	total uint64 // pages added so far
}

func newBatcher(emit func([]hint.Range) error) *batcher {
	return &batcher{emit: emit}
}

// add appends r, merging it into the previous range when they touch.
// Ranges must come in increasing order and must not overlap.
func (b *batcher) add(r hint.Range) error {
	if r.Count == 0 {
		return nil
	}
	b.total += r.Count
	if n := len(b.buf); n > 0 && b.buf[n-1].First+b.buf[n-1].Count == r.First {
		b.buf[n-1].Count += r.Count
		return nil
	}
	if len(b.buf) == maxBatch {
		// The last range stays behind: the next one may extend it.
		last := b.buf[maxBatch-1]
		if err := b.send(b.buf[:maxBatch-1]); err != nil {
			return err
		}
		b.buf = append(b.buf, last)
	}
	b.buf = append(b.buf, r)
	return nil
}

// flush sends what is left.
func (b *batcher) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	return b.send(b.buf)
}

func (b *batcher) send(rs []hint.Range) error {
	out := append(make([]hint.Range, 0, len(rs)), rs...)
	b.buf = make([]hint.Range, 0, maxBatch)
	return b.emit(out)
}

// subtract returns the pages of a that are in no range of b. Both are
// sorted and free of overlaps; the result is too.
func subtract(a, b []hint.Range) []hint.Range {
	var out []hint.Range
	j := 0
	for _, r := range a {
		first, end := r.First, r.First+r.Count
		for j < len(b) && b[j].First+b[j].Count <= first {
			j++
		}
		for k := j; k < len(b) && b[k].First < end; k++ {
			if b[k].First > first {
				out = append(out, hint.Range{First: first, Count: b[k].First - first})
			}
			first = max(first, b[k].First+b[k].Count)
		}
		if first < end {
			out = append(out, hint.Range{First: first, Count: end - first})
		}
	}
	return out
}

// merge sorts rs and joins the ranges that overlap or touch.
func merge(rs []hint.Range) []hint.Range {
	slices.SortFunc(rs, func(a, b hint.Range) int { return cmp.Compare(a.First, b.First) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].First+out[n-1].Count >= r.First {
			out[n-1].Count = max(out[n-1].Count, r.First+r.Count-out[n-1].First)
			continue
		}
		out = append(out, r)
	}
	return out
}
