package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestStoppedAnsweringUnresolvedSaysSo: a run whose source stopped
// answering, and whose resolve then could not place the guest (the
// destination handover-unknown beside the source that answers nothing:
// manual, "handover unresolved"; or the destination's post-copy broken:
// the guest lost), fails with that first in its reason, the stopped
// answering after it, and the report's error is that reason: the
// report's status stays failed (the source's own report never came),
// which alone reads as the guest on the source (docs/JOBS.md), so its
// error must not say less than the handover-unknown path's does. Before,
// the reason and the report's error were "the source stopped answering"
// alone, and the unresolved handover (the guest's only copy perhaps
// paused on the destination, waiting for the resume manual printed) or
// the lost guest was on stderr only, as "cleaning up".
func TestStoppedAnsweringUnresolvedSaysSo(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  func(f *fakeVMM)
		says string // first in the reason
	}{
		{"the destination handover-unknown", func(f *fakeVMM) {
			f.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, "handover unresolved (source unreachable, destination handover-unknown)"},
		{"the destination's post-copy broken", func(f *fakeVMM) {
			f.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
		}, "post-copy broke (source unreachable, destination postcopy-broken): nothing to resolve, the guest is lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.progress = engine.Progress{Phase: engine.PhaseDirty, Pass: 3}
			tc.dst(c.dst)
			go func() { // once migrate follows it: the source answers nothing more
				c.src.waitStatuses(3)
				c.src.mu.Lock()
				c.src.statusDown, c.src.resolveDown = true, true
				c.src.mu.Unlock()
			}()
			rep, out, err := c.run(t.Context(), t)
			if err == nil {
				t.Fatal("succeeded: want it failed, the guest placed on no side")
			}
			if !strings.HasPrefix(err.Error(), tc.says) {
				t.Errorf("migrate says %q; want %q first", err, tc.says)
			}
			wantSays(t, err.Error(), "the source stopped answering during the migration (dirty, pass 3)")
			m := reportJSON(t, rep)
			if m["error"] != err.Error() || m["resolved"] != nil {
				t.Errorf("JSON error %q, resolved %v; want what migrate prints, %q, and no resolved", m["error"], m["resolved"], err.Error())
			}
			wantSaysNone(t, out, "cleaning up")
			c.wantResolutions(t) // nothing moved on either side
		})
	}
}
