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
		r, err := m.span(first, count)
		if err != nil {
			if !errors.Is(err, transport.ErrProtocol) {
				t.Fatalf("span(%d, %d): %v, not ErrProtocol", first, count, err)
			}
			return
		}
		if count == 0 || first < r.first || first+count < first || first+count > r.first+r.pages {
			t.Fatalf("span(%d, %d) = region [%d, %d)", first, count, r.first, r.first+r.pages)
		}
	})
}
