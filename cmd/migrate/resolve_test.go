package main

import (
	"testing"

	"github.com/ferryvm/ferry/vmm"
)

// TestPlan covers every pair of sides: whatever the plan, at most one
// side ends up running, and the source is moved only after the
// destination (its step comes last).
func TestPlan(t *testing.T) {
	sides := []vmm.Side{vmm.SideNone, vmm.SideMigrating, vmm.SideRunning, vmm.SideUnknown,
		vmm.SideMigrated, vmm.SideDiscarded, vmm.SideFailed, sideUnreachable}
	for _, s := range sides {
		for _, d := range sides {
			steps, v := plan(s, d)
			srcRuns, dstRuns := s == vmm.SideRunning, d == vmm.SideRunning
			srcMoved := false
			for _, st := range steps {
				if st.src {
					srcMoved = true
				} else if srcMoved && st.action != actionQuit {
					t.Errorf("%s/%s: the source is moved before the destination: %v", s, d, steps)
				}
				if st.action == actionQuit && (st.src || (d != vmm.SideUnknown && d != vmm.SideDiscarded)) {
					t.Errorf("%s/%s: quits a side that may hold the guest: %v", s, d, steps)
				}
				if st.action == vmm.ResolveResume {
					if st.src {
						srcRuns = true
					} else {
						dstRuns = true
					}
				}
				if st.action == vmm.ResolveDiscard {
					dstRuns = false
				}
			}
			if srcRuns && dstRuns && v != verdictBothRun {
				t.Errorf("%s/%s: plan %v (%d) leaves both running", s, d, steps, v)
			}
			// An unreachable side is never guessed about: only its partner
			// already running (or nothing) is acceptable.
			if (s == sideUnreachable || s == vmm.SideNone || d == sideUnreachable) && len(steps) > 0 {
				t.Errorf("%s/%s: plan %v moves a side while the other cannot be asked", s, d, steps)
			}
		}
	}
	for _, c := range []struct {
		s, d vmm.Side
		want verdict
		n    int
	}{
		{vmm.SideUnknown, vmm.SideRunning, verdictMoved, 1},
		{vmm.SideUnknown, vmm.SideUnknown, verdictSource, 3},
		{vmm.SideUnknown, vmm.SideDiscarded, verdictSource, 2},
		{vmm.SideUnknown, sideUnreachable, verdictManual, 0},
		{vmm.SideRunning, vmm.SideUnknown, verdictSource, 2},
		{vmm.SideRunning, vmm.SideMigrating, verdictCancelDst, 0},
		{vmm.SideMigrated, vmm.SideUnknown, verdictMoved, 1},
		{sideUnreachable, vmm.SideUnknown, verdictManual, 0},
		{vmm.SideNone, vmm.SideUnknown, verdictManual, 0},
		{vmm.SideNone, vmm.SideMigrating, verdictCancelDst, 0},
	} {
		if steps, v := plan(c.s, c.d); v != c.want || len(steps) != c.n {
			t.Errorf("plan(%s, %s) = %v, %d; want verdict %d with %d steps", c.s, c.d, steps, v, c.want, c.n)
		}
	}
}
