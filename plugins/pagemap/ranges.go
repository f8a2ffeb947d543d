package pagemap

import (
	"cmp"
	"slices"

	"github.com/ferryvm/ferry/framework/hint"
)

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
