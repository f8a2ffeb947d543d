package engine

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestSwitchReportedBeforePause: the source reports the switch
// (Progress.Handover switchover, and Mode postcopy when it switches to
// post-copy) before it pauses the VM, in pre-copy and in post-copy. A
// source VMM's shutdown decides from the last report whether it must
// wait for the handover (vmm awaitHandover): a VM paused while the report
// still said live would be stopped at once, leaving no copy to resume if
// the destination never got COMMIT, or in post-copy a guest on the
// destination without the pages only this side holds.
func TestSwitchReportedBeforePause(t *testing.T) {
	for _, mode := range []PostcopyMode{PostcopyOff, PostcopyAlways} {
		t.Run(string(mode), func(t *testing.T) {
			src := dataGuest(t, 4*mib)
			var mu sync.Mutex
			var last Progress
			var atPause []Progress
			src.onPause = func() {
				mu.Lock()
				atPause = append(atPause, last)
				mu.Unlock()
			}
			opt := Options{Postcopy: mode, Progress: func(p Progress) {
				mu.Lock()
				last = p
				mu.Unlock()
			}}
			var serr error
			if mode == PostcopyOff {
				serr = precopyReported(t, src, opt)
			} else {
				_, r := runPostcopy(t, src, opt, nil)
				serr = r.serr
				if r.derr != nil {
					t.Fatalf("destination: %v", r.derr)
				}
			}
			if serr != nil {
				t.Fatalf("send: %v", serr)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(atPause) != 1 {
				t.Fatalf("%d pauses, want 1", len(atPause))
			}
			p := atPause[0]
			wantMode := map[PostcopyMode]string{PostcopyOff: ModePrecopy, PostcopyAlways: ModePostcopy}[mode]
			if p.Handover != HandoverSwitchover || p.Mode != wantMode {
				t.Errorf("last report before the pause: handover %s, mode %q; want %s, %q", p.Handover, p.Mode, HandoverSwitchover, wantMode)
			}
		})
	}
}

// precopyReported migrates src to a fake destination, the source with
// opt (and its Progress), the destination without.
func precopyReported(t *testing.T, src *fakeVM, opt Options) error {
	t.Helper()
	dst := newFakeVM(t, [2]uint64{0, 4 * mib})
	s, r := newPipe(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() { _, rerr = Receive(ctx, dst, r, Options{}) })
	_, serr := Send(ctx, src, s, opt)
	wg.Wait()
	if rerr != nil {
		t.Fatalf("receive: %v", rerr)
	}
	return serr
}
