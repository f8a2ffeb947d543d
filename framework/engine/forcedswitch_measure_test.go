package engine

import (
	"context"
	"errors"
	"sync/atomic"
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

// passSlowLink is a source's transport whose link moves pagesPerSec
// data pages a second while slow is set, and as fast as the pipe
// otherwise.
type passSlowLink struct {
	transport.Transport
	pagesPerSec float64
	slow        *atomic.Bool
}

func (l *passSlowLink) SendPages(ctx context.Context, runs []transport.PageRun) error {
	if !l.slow.Load() {
		return l.Transport.SendPages(ctx, runs)
	}
	return (&slowLink{Transport: l.Transport, pagesPerSec: l.pagesPerSec}).SendPages(ctx, runs)
}

// TestForcedSwitchTransientSlowPassNotRefused: a guest that writes its
// 512 pages between every two syncs, over a link that is fast but for
// the last live pass (pass 2), which it moves at 256 pages a second
// (2 s: a link congested for a while). The final pass goes as fast as
// pass 1 did, well within switchover_timeout (1 s): the forced switch
// must be begun, and finish. Refusing on the last pass's rate alone
// refused it.
func TestForcedSwitchTransientSlowPassNotRefused(t *testing.T) {
	src, dst, pauses := outrunGuest(t, 2*mib, 0)
	var slow atomic.Bool
	src.onSync = func(n int) { // n 1: before pass 1, 2: before pass 2, 3: after it, 4: the final sync
		slow.Store(n == 2)
		src.mu.Lock()
		src.dirty.SetRange(0, src.layout.Pages())
		src.mu.Unlock()
	}
	opt := Options{MaxDowntime: time.Nanosecond, MaxPasses: 2, SwitchoverTimeout: time.Second}
	srep, serr, _, rerr := sendOver(t, src, dst, opt, func(tr transport.Transport) transport.Transport {
		return &passSlowLink{Transport: tr, pagesPerSec: 256, slow: &slow}
	})
	if errors.Is(serr, ErrNotConverged) {
		t.Fatalf("refused a switch on one slow pass's rate, though the link was fast before: %v", serr)
	}
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if n := pauses.Load(); n != 1 || srep.Status != StatusCompleted {
		t.Errorf("paused %d times, status %s; want 1, completed", n, srep.Status)
	}
}
