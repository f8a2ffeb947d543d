// Package bitmap is a fixed-size bitmap of guest pages with word-level
// operations: the to-send set, dirty logs and hint sets of the engine.
// It is not safe for concurrent use.
package bitmap

import "math/bits"

// Bitmap holds one bit per page.
type Bitmap struct {
	n     uint64
	words []uint64
}

// New returns a bitmap of n pages, all clear.
func New(n uint64) *Bitmap { return &Bitmap{n: n, words: make([]uint64, (n+63)/64)} }

// Len is the number of pages.
func (b *Bitmap) Len() uint64 { return b.n }

// Words exposes the backing words (bit i of word w = page 64w+i). Bits
// past Len must stay clear.
func (b *Bitmap) Words() []uint64 { return b.words }

// Set sets page p.
func (b *Bitmap) Set(p uint64) { b.words[p/64] |= 1 << (p % 64) }

// Clear clears page p.
func (b *Bitmap) Clear(p uint64) { b.words[p/64] &^= 1 << (p % 64) }

// Test reports whether page p is set.
func (b *Bitmap) Test(p uint64) bool { return b.words[p/64]&(1<<(p%64)) != 0 }

// SetAll sets every page.
func (b *Bitmap) SetAll() {
	for i := range b.words {
		b.words[i] = ^uint64(0)
	}
	b.trim()
}

// ClearAll clears every page.
func (b *Bitmap) ClearAll() { clear(b.words) }

func (b *Bitmap) trim() {
	if r := b.n % 64; r != 0 {
		b.words[len(b.words)-1] &= 1<<r - 1
	}
}

// SetRange sets pages [p, p+n), clipped to the bitmap.
func (b *Bitmap) SetRange(p, n uint64) { b.rangeOp(p, n, true) }

// ClearRange clears pages [p, p+n), clipped to the bitmap.
func (b *Bitmap) ClearRange(p, n uint64) { b.rangeOp(p, n, false) }

func (b *Bitmap) rangeOp(p, n uint64, set bool) {
	if p >= b.n {
		return
	}
	end := min(p+n, b.n)
	if p+n < p {
		end = b.n
	}
	for p < end {
		w, bit := p/64, p%64
		span := min(64-bit, end-p)
		mask := ^uint64(0)
		if span < 64 {
			mask = (1<<span - 1) << bit
		}
		if set {
			b.words[w] |= mask
		} else {
			b.words[w] &^= mask
		}
		p += span
	}
}

// Count returns the number of set pages.
func (b *Bitmap) Count() uint64 {
	var c int
	for _, w := range b.words {
		c += bits.OnesCount64(w)
	}
	return uint64(c)
}

// Or sets every page set in o (same length).
func (b *Bitmap) Or(o *Bitmap) {
	for i, w := range o.words {
		b.words[i] |= w
	}
}

// AndNot clears every page set in o (same length).
func (b *Bitmap) AndNot(o *Bitmap) {
	for i, w := range o.words {
		b.words[i] &^= w
	}
}

// NextSet returns the first set page >= p, or Len() if there is none.
func (b *Bitmap) NextSet(p uint64) uint64 { return b.NextSetIn(p, b.n) }

// NextClear returns the first clear page >= p, or Len() if there is none.
func (b *Bitmap) NextClear(p uint64) uint64 { return b.NextClearIn(p, b.n) }

// NextSetIn returns the first set page in [p, end), or end (clipped to
// Len()) if there is none. It reads only the words of [p, end), so a
// caller that walks a range in pieces pays for each word once.
func (b *Bitmap) NextSetIn(p, end uint64) uint64 { return b.next(p, end, 0) }

// NextClearIn returns the first clear page in [p, end), or end (clipped
// to Len()) if there is none; it reads only the words of [p, end).
func (b *Bitmap) NextClearIn(p, end uint64) uint64 { return b.next(p, end, ^uint64(0)) }

// next finds the first page in [p, end) whose bit differs from flip's.
func (b *Bitmap) next(p, end, flip uint64) uint64 {
	end = min(end, b.n)
	if p >= end {
		return end
	}
	w, last := p/64, (end-1)/64
	word := (b.words[w] ^ flip) &^ (1<<(p%64) - 1)
	for word == 0 {
		if w++; w > last {
			return end
		}
		word = b.words[w] ^ flip
	}
	return min(w*64+uint64(bits.TrailingZeros64(word)), end)
}

// Runs calls fn for each maximal run of set pages, in order, until fn
// returns false.
func (b *Bitmap) Runs(fn func(first, n uint64) bool) {
	for p := b.NextSet(0); p < b.n; {
		end := b.NextClear(p)
		if !fn(p, end-p) {
			return
		}
		p = b.NextSet(end)
	}
}
