package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveCancelRefused: the cancel of a destination beside a running
// source that its VMM does not apply, and says why (it is in post-copy,
// acts on COMMIT, or refuses the act for a reason of its own), is sent
// once: the resolve says what the VMM answered, asks both sides afresh
// and plans from their answers. A destination that then ends is resolved
// as usual (here: failed, the guest runs on the source); one that still
// migrates when the wait runs out is left to the operator with the
// VMM's reason, not with "still migrating"; a failing one is not sent
// its last cancel again, and the reason is said. Found in the last
// closing note: the loop sent the cancel at every query (every 200 ms)
// until the wait ran out, and only the last cancel of a failing
// destination reported a refusal.
func TestResolveCancelRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(f *fakeVMM) // the destination, migrating "a"
		verdict verdict
		say     []string // in what migrate prints
	}{
		{"post-copy, still migrating", func(f *fakeVMM) { f.postcopy = true }, verdictManual,
			[]string{"post-copy cannot be cancelled", "did not cancel migration id a"}},
		{"refused by error, still migrating", func(f *fakeVMM) { f.cancelRefusal = "bad arguments: a reason of its own" }, verdictManual,
			[]string{"a reason of its own", "did not cancel migration id a"}},
		{"committing, then failed", func(f *fakeVMM) {
			f.committing = true
			f.finishWith(4, engine.StatusFailed, api.SideFailed) // ends failed a few queries later
		}, verdictSource, []string{"COMMIT arrived"}},
		{"failing, past the wait", func(f *fakeVMM) {
			f.postcopy = true // as a destination whose cancel only ended its linger answers
			f.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
		}, verdictSource, []string{"post-copy cannot be cancelled", "it never runs the guest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			tc.set(c.dst)
			var out strings.Builder
			r := newResolver(fakeJob(c.src, c.dst), &out)
			r.wait = 1500 * time.Millisecond // several queries
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
			if got := strings.Join(c.dst.actIDs(), ","); got != "migrate-cancel a" {
				t.Errorf("destination asked %q: want one cancel naming a", got)
			}
			if v != tc.verdict || (err == nil) != (v == verdictSource) {
				t.Errorf("verdict %d, err %v: want %d", v, err, tc.verdict)
			}
			for _, say := range tc.say {
				if !strings.Contains(out.String()+errText(err), say) {
					t.Errorf("migrate does not say %q", say)
				}
			}
			if v == verdictManual && strings.Contains(errText(err), "a side is still migrating") {
				t.Errorf("the cause is %q, not the VMM's refusal", err)
			}
			if len(c.resolutions()) != 0 {
				t.Errorf("resolutions %q: want none", c.resolutions())
			}
		})
	}
}

// errText is err's text, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
