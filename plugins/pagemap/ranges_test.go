package pagemap

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

func rng(first, count uint64) hint.Range { return hint.Range{First: first, Count: count} }

func TestSubtract(t *testing.T) {
	for _, c := range []struct{ a, b, want []hint.Range }{
		{nil, nil, nil},
		{[]hint.Range{rng(0, 10)}, nil, []hint.Range{rng(0, 10)}},
		{[]hint.Range{rng(0, 10)}, []hint.Range{rng(0, 10)}, nil},
		{[]hint.Range{rng(0, 10)}, []hint.Range{rng(2, 3), rng(7, 1)}, []hint.Range{rng(0, 2), rng(5, 2), rng(8, 2)}},
		{[]hint.Range{rng(0, 4), rng(6, 4)}, []hint.Range{rng(3, 4)}, []hint.Range{rng(0, 3), rng(7, 3)}},
		{[]hint.Range{rng(5, 5)}, []hint.Range{rng(0, 3), rng(11, 3)}, []hint.Range{rng(5, 5)}},
		{[]hint.Range{rng(5, 5), rng(20, 5)}, []hint.Range{rng(0, 100)}, nil},
	} {
		if got := subtract(c.a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("%v - %v = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// toSet and fromSet convert between ranges and page sets for the
// reference implementation.
func toSet(rs []hint.Range) map[uint64]bool {
	m := map[uint64]bool{}
	for _, r := range rs {
		for p := r.First; p < r.First+r.Count; p++ {
			m[p] = true
		}
	}
	return m
}

// randomRanges makes sorted, disjoint, non-adjacent ranges inside [0, 256).
func randomRanges(r *rand.Rand) []hint.Range {
	var out []hint.Range
	p := uint64(r.IntN(8))
	for p < 256 && r.IntN(12) != 0 {
		n := uint64(1 + r.IntN(16))
		out = append(out, hint.Range{First: p, Count: min(n, 256-p)})
		p += n + 1 + uint64(r.IntN(16))
	}
	return out
}

func FuzzSubtract(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, s1, s2 uint64) {
		r := rand.New(rand.NewPCG(s1, s2))
		a, b := randomRanges(r), randomRanges(r)
		got := subtract(a, b)
		sa, sb, sg := toSet(a), toSet(b), toSet(got)
		for p := range uint64(256) {
			if sg[p] != (sa[p] && !sb[p]) {
				t.Fatalf("%v - %v = %v: page %d wrong", a, b, got, p)
			}
		}
		for i := 1; i < len(got); i++ {
			if got[i].First < got[i-1].First+got[i-1].Count || got[i-1].Count == 0 {
				t.Fatalf("unsorted or empty: %v", got)
			}
		}
	})
}

func TestMerge(t *testing.T) {
	in := []hint.Range{rng(10, 2), rng(0, 1), rng(11, 5), rng(1, 1), rng(20, 1), rng(12, 1)}
	if got, want := merge(in), []hint.Range{rng(0, 2), rng(10, 6), rng(20, 1)}; !slices.Equal(got, want) {
		t.Fatalf("merge: %v, want %v", got, want)
	}
}
