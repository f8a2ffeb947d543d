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

// TestResolveMainUnnamedRunningSourceNotBothRun: migrate -resolve finds
// a destination older than api.TagsReported running the guest of a
// hand-started migration (no id, no tag fingerprint) beside a source
// socket whose VMM holds no migration (verdict moved); by quitSource's
// look that VMM sends in a migration of its own and runs its guest.
// Nothing names the migration resolved (no id, and no fingerprint to
// compare), so nothing says that VMM is its source: migrate must not
// say BOTH run it and tell the operator to stop one (the destination
// holds this guest; the other VMM's guest may be a stranger's), nor quit
// it. It says the guest runs on the destination, that the VMM at the
// source's socket runs a guest nothing here tells apart from this one,
// left alone, and exits 1, as it may be this migration's source. Before,
// quitSource took any running sender for the source (an empty id and
// fingerprint match every migration) and migrate said BOTH run it.
func TestResolveMainUnnamedRunningSourceNotBothRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		srcControl uint16
		srcTag     string
	}{
		{"older source", 1, ""},
		{"source with a fingerprint", api.ControlVersion, tagB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.dst.controlV = 1 // reports no tag fingerprint
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.src.role, c.src.controlV = "", tc.srcControl // no migration at the resolve's look
			c.src.finishWith(0, "", api.SideNone)
			c.src.looked = func(f *fakeVMM) { // after the resolve's query: quitSource's is next
				f.role, f.side, f.tag = "send", api.SideRunning, tc.srcTag
			}
			code, stdout, stderr := c.resolveMain(t)
			if code != 1 {
				t.Errorf("exit %d, want 1: the VMM at the source's socket may be this migration's source", code)
			}
			c.wantNothingAsked(t)
			wantSays(t, stdout+stderr, "resolved: the guest runs on the destination", "nothing here tells", "left alone")
			wantSaysNone(t, stdout+stderr, "BOTH the source", "stop one of them now")
		})
	}
}
