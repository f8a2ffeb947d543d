package main

import (
	"cmp"
	"errors"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestFinishCompletedOnlyAReceiver: the source completed migration a
// (it says migrated), and the VMM at the destination's socket reports a
// done and running, with its report, in each role. Only a receiver of a
// completed it as its destination: its report is the destination's and
// the run succeeds. A sender of a there (a VMM started at that socket
// that sent a migration under the same id, reused by hand) runs a guest
// of its own, and a VMM in a role this migrate does not know, or in
// none, says nothing of this guest: finishCompleted takes none of their
// reports and fails saying why (statusReceives, *errNotDestination).
// Before, waitDone looked at the id only, and each was taken for the
// destination that completed.
func TestFinishCompletedOnlyAReceiver(t *testing.T) {
	for _, tc := range []struct {
		role string
		say  string // in the error when refused
	}{
		{"receive", ""},
		{"send", "sends in migration id a (running): it is not that migration's destination"},
		{"relay", `reports role "relay", which this migrate does not know`},
		{"", "but no role"},
	} {
		t.Run(cmp.Or(tc.role, "none"), func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.role = tc.role
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			var log strings.Builder
			rep, err := finishCompleted(fakeJob(c.src, c.dst), report{Report: engine.Report{Status: engine.StatusCompleted}}, "a", nil, &log)
			t.Logf("err %v, calls %s\n%s", err, c.callList(), log.String())
			if tc.say == "" {
				if err != nil || rep.Destination == nil {
					t.Fatalf("err %v, destination report %v: want the run completed with the receiver's report", err, rep.Destination)
				}
				return
			}
			var notDst *errNotDestination
			if !errors.As(err, &notDst) {
				t.Fatalf("err %v: want an *errNotDestination", err)
			}
			wantSays(t, err.Error(), tc.say, c.dst.sock)
			if rep.Destination != nil {
				t.Errorf("the destination's report is %+v: want none taken from a VMM that did not receive", rep.Destination)
			}
			if acts := c.dst.actIDs(); len(acts) != 0 {
				t.Errorf("the VMM at the destination's socket was asked %q, want nothing", acts)
			}
		})
	}
}
