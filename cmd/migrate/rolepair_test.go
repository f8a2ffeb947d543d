package main

import (
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveWrongRoleNotPaired: migrate -resolve, both sides id-less
// from VMMs of this control version, where the VMM at one of the job's
// sockets takes part in a migration in the other role: a sender at the
// destination's socket (the guest it received earlier runs there, and
// its own migrate-send failed before HELLO: running, no tag
// fingerprint, as the reference VMM reports it: sideAfter, the engine
// sets the fingerprint only as HELLO goes out), or a receiver at the
// source's socket. Neither is the other side's partner (a source's
// partner receives), so nothing is moved, no command is printed, and
// migrate says the two take part in two different migrations. Before,
// pair looked at ids and fingerprints only: the sender running beside a
// source with a fingerprint was said to misreport (5e2e2da's misreport
// takes "running" for a destination's, which only a HELLO leads to),
// an honest VMM the operator was told to look into; beside a source
// without one it paired by "" == "", and migrate said BOTH sides run
// the guest ("stop one of them now": one of two different guests),
// printed a migrate-cancel of the sender's own migration to run by
// hand, or waited out its wait beside a receiver at the source's socket
// and printed resumes for both.
func TestResolveWrongRoleNotPaired(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
	}{
		{"source migrated, a sender at the destination's socket runs its own guest", func(c *runCase) {
			c.src.tag = tagA
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.role = "send"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}},
		{"source handover-unknown, a sender at the destination's socket runs its own guest", func(c *runCase) {
			c.src.tag = tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.role = "send"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}},
		{"source running, a sender at the destination's socket runs its own guest", func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.role = "send"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}},
		{"source running, a sender at the destination's socket before its HELLO", func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.role, c.dst.running = "send", true
		}},
		{"a receiver at the source's socket before HELLO, the destination too", func(c *runCase) {
			c.src.role, c.src.running = "receive", true
			c.dst.running = true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			// The wait is a bound only: a pair refused ends at the first look.
			v, text, err := c.resolveInProcess(t, "", 2*time.Second)
			if v != verdictManual || err == nil {
				t.Errorf("verdict %d, err %v: want manual, an error", v, err)
			}
			c.wantNothingAsked(t)
			wantSays(t, text, "take part in two different migrations")
			// An honest VMM of another migration is not taken for this
			// one's: said to misreport, or to run the guest beside it.
			wantSaysNone(t, text, "misreports", "BOTH")
			wantNoCommand(t, text, "to a VMM of another migration")
		})
	}
}
