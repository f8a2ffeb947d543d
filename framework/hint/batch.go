package hint

// BatchRanges is the most ranges a Batcher hands emit at once: 2048
// ranges are 32 KiB on the wire, within the "few thousand" per emit
// that Provider.Hints asks for.
const BatchRanges = 2048

// Batcher coalesces the ranges a provider finds in increasing page
// order and hands them to emit (Provider.Hints's) BatchRanges at a
// time: a range that touches the one before it is merged into it, and
// the last range of a full batch waits for the next batch, since the
// next range may extend it. Every batch is a fresh slice, so emit may
// keep it.
//
// It does not sort, check or merge overlapping ranges: ranges that come
// out of order or overlap are passed on as they came (the engine drops
// and counts those outside RAM). A Batcher is one Hints call's, used
// from one goroutine; what was added after the last Flush is never
// emitted.
type Batcher struct {
	emit  func([]Range) error
	buf   []Range
	pages uint64
}

// NewBatcher returns an empty Batcher that hands its batches to emit.
func NewBatcher(emit func([]Range) error) *Batcher {
	return &Batcher{emit: emit}
}

// Add appends r (nothing if it is empty), merging it into the previous
// range when they touch. It returns emit's error when a full batch went
// out and emit refused it.
func (b *Batcher) Add(r Range) error {
	if r.Count == 0 {
		return nil
	}
	b.pages += r.Count
	if n := len(b.buf); n > 0 && b.buf[n-1].First+b.buf[n-1].Count == r.First {
		b.buf[n-1].Count += r.Count
		return nil
	}
	if len(b.buf) == BatchRanges {
		// The last range stays behind: the next one may extend it.
		last := b.buf[BatchRanges-1]
		if err := b.send(b.buf[:BatchRanges-1]); err != nil {
			return err
		}
		b.buf = append(b.buf, last)
	}
	b.buf = append(b.buf, r)
	return nil
}

// Flush hands what is left to emit and returns emit's error.
func (b *Batcher) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	return b.send(b.buf)
}

// Pages is how many pages were added so far, emitted or not.
func (b *Batcher) Pages() uint64 { return b.pages }

func (b *Batcher) send(rs []Range) error {
	out := append(make([]Range, 0, len(rs)), rs...)
	b.buf = make([]Range, 0, BatchRanges)
	return b.emit(out)
}
