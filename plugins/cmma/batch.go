package cmma

import "github.com/ferryvm/ferry/framework/hint"

// maxBatch is the most ranges one emit call carries.
const maxBatch = 2048

// batcher coalesces ranges that arrive in increasing page order and hands
// them to emit maxBatch at a time, each batch a fresh slice.
type batcher struct {
	emit  func([]hint.Range) error
	buf   []hint.Range
	total uint64 // pages added so far
}

// add appends rs (sorted, after everything added before), merging a range
// into the previous one when they touch.
func (b *batcher) add(rs []hint.Range) error {
	for _, r := range rs {
		if r.Count == 0 {
			continue
		}
		b.total += r.Count
		if n := len(b.buf); n > 0 && b.buf[n-1].First+b.buf[n-1].Count == r.First {
			b.buf[n-1].Count += r.Count
			continue
		}
		if len(b.buf) == maxBatch { // the last range waits: the next may extend it
			last := b.buf[maxBatch-1]
			if err := b.send(b.buf[:maxBatch-1]); err != nil {
				return err
			}
			b.buf = append(b.buf, last)
		}
		b.buf = append(b.buf, r)
	}
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
