package bitmap

import (
	"math/rand/v2"
	"testing"
)

// TestAgainstModel checks every operation against a []bool model.
func TestAgainstModel(t *testing.T) {
	for _, n := range []uint64{1, 63, 64, 65, 1000, 4096 + 7} {
		b, model := New(n), make([]bool, n)
		r := rand.New(rand.NewPCG(n, 1))
		for i := 0; i < 2000; i++ {
			p, k := r.Uint64N(n), r.Uint64N(n+70)
			switch r.IntN(5) {
			case 0:
				b.Set(p)
				model[p] = true
			case 1:
				b.Clear(p)
				model[p] = false
			case 2:
				b.SetRange(p, k)
				for q := p; q < min(p+k, n); q++ {
					model[q] = true
				}
			case 3:
				b.ClearRange(p, k)
				for q := p; q < min(p+k, n); q++ {
					model[q] = false
				}
			case 4:
				if r.IntN(50) == 0 {
					b.SetAll()
					for q := range model {
						model[q] = true
					}
				}
			}
		}
		var count uint64
		for p, v := range model {
			if b.Test(uint64(p)) != v {
				t.Fatalf("n=%d page %d: %v, model %v", n, p, b.Test(uint64(p)), v)
			}
			if v {
				count++
			}
		}
		if b.Count() != count {
			t.Fatalf("n=%d Count %d, model %d", n, b.Count(), count)
		}
		var fromRuns uint64
		last := uint64(0)
		b.Runs(func(first, k uint64) bool {
			if first < last || k == 0 || !model[first] || (first > 0 && model[first-1] && first != last) {
				t.Fatalf("bad run %d+%d", first, k)
			}
			for q := first; q < first+k; q++ {
				if !model[q] {
					t.Fatalf("run %d+%d covers clear page %d", first, k, q)
				}
			}
			fromRuns += k
			last = first + k
			return true
		})
		if fromRuns != count {
			t.Fatalf("runs cover %d pages, want %d", fromRuns, count)
		}
	}
}

// TestNextIn checks NextSetIn and NextClearIn against a []bool model for
// every start and end around word boundaries.
func TestNextIn(t *testing.T) {
	for _, n := range []uint64{1, 63, 64, 65, 200} {
		r := rand.New(rand.NewPCG(n, 2))
		b, model := New(n), make([]bool, n)
		for p := range model {
			if r.IntN(3) == 0 {
				b.Set(uint64(p))
				model[p] = true
			}
		}
		b.SetRange(n/2, n/4) // a long run too
		for q := n / 2; q < n/2+n/4; q++ {
			model[q] = true
		}
		for p := uint64(0); p <= n+1; p++ {
			for end := uint64(0); end <= n+70; end++ {
				wantSet, wantClear := min(end, n), min(end, n)
				for q := p; q < min(end, n); q++ {
					if model[q] && wantSet == min(end, n) {
						wantSet = q
					}
					if !model[q] && wantClear == min(end, n) {
						wantClear = q
					}
				}
				if got := b.NextSetIn(p, end); got != wantSet {
					t.Fatalf("n=%d NextSetIn(%d, %d) = %d, want %d", n, p, end, got, wantSet)
				}
				if got := b.NextClearIn(p, end); got != wantClear {
					t.Fatalf("n=%d NextClearIn(%d, %d) = %d, want %d", n, p, end, got, wantClear)
				}
			}
		}
	}
}

func TestRangeWrap(t *testing.T) {
	b := New(100)
	b.SetRange(90, ^uint64(0))
	if b.Count() != 10 || b.NextSet(0) != 90 {
		t.Errorf("wrapping SetRange: count %d first %d", b.Count(), b.NextSet(0))
	}
	b.SetRange(200, 5)
	if b.Count() != 10 {
		t.Error("SetRange past the end changed bits")
	}
}

// BenchmarkNextClear8GiB is one run over an all-set 8 GiB bitmap: the
// cost of finding where a hinted or to-send stretch ends.
func BenchmarkNextClear8GiB(b *testing.B) {
	bm := New(8 << 30 >> 12)
	bm.SetAll()
	for i := 0; i < b.N; i++ {
		bm.NextClear(0)
	}
}

func BenchmarkCount8GiB(b *testing.B) {
	bm := New(8 << 30 >> 12)
	bm.SetRange(0, bm.Len()/2)
	for i := 0; i < b.N; i++ {
		bm.Count()
	}
}
