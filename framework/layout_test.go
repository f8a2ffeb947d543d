package framework

import (
	"math"
	"strings"
	"testing"
)

// TestLayoutCheck: a region whose guest range wraps past 2^64 (its end
// reads as a low address, so a later region overlapping it passed) or
// whose file range passes int64 is refused, and so is a layout without
// regions (no page to migrate or to check; it passed before); well-formed
// layouts pass.
func TestLayoutCheck(t *testing.T) {
	const top = math.MaxUint64 - PageSize + 1 // the last page's address
	for _, tc := range []struct {
		name string
		l    Layout
		bad  string
	}{
		{"one region", Layout{{GPA: 0, Size: 1 << 20}}, ""},
		{"two regions", Layout{{GPA: 0, Size: 1 << 20}, {GPA: 1 << 32, Size: 1 << 20, Offset: 1 << 20}}, ""},
		{"last page below 2^64", Layout{{GPA: top - PageSize, Size: PageSize}}, ""},
		{"wraps past 2^64, then overlaps", Layout{{GPA: 1 << 63, Size: 1 << 63}, {GPA: 1 << 20, Size: PageSize}}, "runs past the end"},
		{"wraps past 2^64", Layout{{GPA: top, Size: 2 * PageSize}}, "runs past the end"},
		{"file range past int64", Layout{{GPA: 0, Size: 1 << 20, Offset: math.MaxInt64 - PageSize + 1}}, "runs past the end"},
		{"overlap", Layout{{GPA: 0, Size: 1 << 20}, {GPA: 1 << 19, Size: PageSize}}, "overlaps"},
		{"unaligned", Layout{{GPA: 1, Size: PageSize}}, "page-aligned"},
		{"no regions", Layout{}, "no RAM regions"},
		{"nil", nil, "no RAM regions"},
		{"empty region", Layout{{GPA: 0, Size: 0}}, "page-aligned"},
	} {
		err := tc.l.Check()
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.bad)
		}
	}
}
