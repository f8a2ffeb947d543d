package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestForcedSwitchZeroPagesNotRefused: a guest that writes 512 pages of
// data and zeroes 15 872 more between every two syncs (a buffer it
// clears, pages its kernel zeroes on free) behind a link that moves
// 2048 data pages a second. Every pass sends the 512 in about 250 ms;
// the zero pages travel as zero runs, which cost the link nothing. The
// forced switch's final pass does the same, well within a
// switchover_timeout of 2 s: it must be begun, and finish. Counting
// the 16 384 dirty pages at the data rate (8 s) refused it. Within
// 50 ms it cannot finish, and is still refused.
func TestForcedSwitchZeroPagesNotRefused(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		refused bool
	}{
		{2 * time.Second, false},
		{50 * time.Millisecond, true},
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			const size, data = 64 * mib, 512
			src, dst, pauses := outrunGuest(t, size, data)
			pages := src.layout.Pages()
			clear(src.mem[data*framework.PageSize:]) // populated, all zero: zero runs, not holes
			src.onSync = func(int) {
				src.mu.Lock()
				src.dirty.SetRange(0, pages)
				src.mu.Unlock()
			}
			opt := Options{MaxDowntime: time.Nanosecond, MaxPasses: 2, SwitchoverTimeout: tc.timeout}
			srep, serr, _, rerr := sendOver(t, src, dst, opt, func(tr transport.Transport) transport.Transport {
				return &slowLink{Transport: tr, pagesPerSec: 2048}
			})
			if tc.refused {
				if !errors.Is(serr, ErrNotConverged) || pauses.Load() != 0 {
					t.Fatalf("paused %d times, Send: %v; want a refusal: 512 data pages take ~250 ms", pauses.Load(), serr)
				}
				t.Logf("Send: %v", serr)
				return
			}
			if errors.Is(serr, ErrNotConverged) {
				t.Fatalf("refused a switch whose final pass sends 512 data pages (~250 ms) within switchover_timeout %v: %v", tc.timeout, serr)
			}
			if serr != nil || rerr != nil {
				t.Fatalf("send %v / receive %v", serr, rerr)
			}
			if n := pauses.Load(); n != 1 || srep.Status != StatusCompleted {
				t.Errorf("paused %d times, status %s; want 1, completed", n, srep.Status)
			}
		})
	}
}
