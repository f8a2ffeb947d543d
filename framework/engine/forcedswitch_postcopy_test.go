package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestForcedSwitchPostcopyTakesOver: a guest that out-dirties a slow
// link (2048 pages a second) reaches max_passes with a switch that
// could not finish within switchover_timeout (50 ms), to a destination
// that can serve post-copy. In mode "auto", and with the operator's
// StartPostcopy fired as the last live pass ends (its dirty sync), the
// source switches to post-copy: the refusal is never asked, and the
// migration completes.
func TestForcedSwitchPostcopyTakesOver(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		mode      PostcopyMode
		manual    bool
	}{
		{"auto", "max_passes (2) reached", PostcopyAuto, false},
		{"manual at the last sync", "the operator asked (StartPostcopy) after pass 2", PostcopyOff, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := dataGuest(t, 2*mib)
			pages := src.layout.Pages()
			start := make(chan struct{})
			src.onSync = func(n int) { // 3: the sync after pass 2, the last live pass
				src.mu.Lock()
				src.dirty.SetRange(0, pages)
				src.mu.Unlock()
				if n == 3 && tc.manual {
					close(start)
				}
			}
			opt := Options{Postcopy: tc.mode, MaxDowntime: time.Nanosecond, MaxPasses: 2, SwitchoverTimeout: 50 * time.Millisecond}
			if tc.manual {
				opt.StartPostcopy = start
			}
			d, r := runPostcopy(t, src, opt, func(d *scriptDst) {
				d.wrapSrc = func(tr transport.Transport) transport.Transport { return &slowLink{Transport: tr, pagesPerSec: 2048} }
			})
			if errors.Is(r.serr, ErrNotConverged) {
				t.Fatalf("refused where post-copy takes over: %v", r.serr)
			}
			if r.serr != nil || r.derr != nil {
				t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
			}
			d.check(t)
			if r.srep.Mode != ModePostcopy || !strings.Contains(r.logs.String(), tc.why) {
				t.Errorf("mode %q, want post-copy because %q; log:\n%s", r.srep.Mode, tc.why, r.logs)
			}
		})
	}
}
