package tcp

import (
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// FuzzSpan: whatever run a frame claims, span either refuses it with
// ErrProtocol or returns exactly that run's bytes inside one region.
func FuzzSpan(f *testing.F) {
	m := &ram{}
	for _, pages := range []uint64{3, 1, 5} {
		m.regions = append(m.regions, &region{first: m.Pages, pages: pages, mem: make([]byte, pages*pageSize)})
		m.Pages += pages
	}
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(2), uint64(2))
	f.Add(uint64(8), uint64(1))
	f.Add(^uint64(0), uint64(2))
	f.Fuzz(func(t *testing.T, first, count uint64) {
		r, b, err := m.span(first, count)
		if err != nil {
			if !errors.Is(err, transport.ErrProtocol) {
				t.Fatalf("span(%d, %d): %v, not ErrProtocol", first, count, err)
			}
			return
		}
		if first < r.first || first+count > r.first+r.pages || uint64(len(b)) != count*pageSize {
			t.Fatalf("span(%d, %d) = %d bytes in region [%d, %d)", first, count, len(b), r.first, r.first+r.pages)
		}
		if &b[0] != &r.mem[(first-r.first)*pageSize] {
			t.Fatalf("span(%d, %d) does not start at page %d of its region", first, count, first-r.first)
		}
	})
}
