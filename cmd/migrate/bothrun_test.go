package main

import (
	"context"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveMainSourceResumedBesideDestination: migrate -resolve finds
// the source of migration a failed and the destination running it
// (verdict moved); by quitSource's look the VMM at the source's socket
// runs the guest in a (resumed between the two looks). Where it sends in
// a, it is that migration's source (sourceSends), and BOTH sides run the
// guest: migrate says so plainly, quits neither and exits 1, as where
// the resolve's own look finds both running (verdictBothRun). Before,
// it said "resolved: the guest runs on the destination" and that the
// source says running in this migration, not quit, to resolve again,
// and exited 0. A receiver in a there is not a's source: left alone, as
// one that says it handed the guest over (TestResolveMainLeavesReceiverAtSource).
func TestResolveMainSourceResumedBesideDestination(t *testing.T) {
	for _, tc := range []struct {
		role string
		code int
		says []string
	}{
		{"send", 1, []string{"BOTH the source", "report that the guest runs", "stop one of them now"}},
		{"receive", 0, []string{"resolved: the guest runs on the destination", "receives in migration id a", "left alone"}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.src.looked = func(f *fakeVMM) { // after the resolve's query: quitSource's is next
				f.role, f.side = tc.role, api.SideRunning
			}
			code, stdout, stderr := c.resolveMain(t)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			c.wantNothingAsked(t)
			wantSays(t, stdout+stderr, tc.says...)
			if tc.role == "send" {
				wantSaysNone(t, stdout+stderr, "resolved:", "run again")
			}
		})
	}
}

// TestRunSourceResumedBesideDestination: migrate's own run completes
// migration a; by the time it quits the source, the VMM at the source's
// socket runs the guest in a, as its sender. The run fails saying BOTH
// sides run it, and quits neither. Before, the run succeeded: quitSource
// left the source alone (it did not say it handed the guest over) and
// nothing was said.
func TestRunSourceResumedBesideDestination(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(2, engine.StatusCompleted, api.SideMigrated)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	c.src.looked = func(f *fakeVMM) { // the look that saw it done: quitSource's is next
		if f.done {
			f.side = api.SideRunning
		}
	}
	_, out, err := c.run(context.Background(), t)
	if err == nil {
		t.Fatal("the run succeeded: want it failed, both sides running")
	}
	wantSays(t, err.Error(), "BOTH the source", "stop one of them now")
	if acts := c.src.actIDs(); len(acts) != 0 {
		t.Errorf("the source was asked %q, want nothing", acts)
	}
	if acts := c.dst.actIDs(); len(acts) != 0 {
		t.Errorf("the destination was asked %q, want nothing", acts)
	}
	wantSaysNone(t, out, "left alone")
}
