package main

import (
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveResumeAnsweredInWrongRole: a look's resume (the verdict's
// last word: no further look follows) is answered "running" by a VMM in
// the role the side it was sent to does not take in the migration (one
// started at that socket between the look and the act, that received,
// or sent, a migration under the same id). That VMM is not this job's
// side: the resolve must not say the guest runs there, nor act further
// on the look (a discarded destination is not quit: it may hold the
// guest's only copy). It ends manual, with the wrong roles said and no
// command printed. Before, the verdict was source (or moved), "the
// guest runs on the source", and a discarded destination was quit.
func TestResolveResumeAnsweredInWrongRole(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		src, dst string // the acts each side is asked
		say      string
	}{
		{"source resumed beside a failed destination", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.src.looked = func(f *fakeVMM) { f.role = "receive" }
		}, "resolve resume a", "", `report role "receive" in migration id a`},
		{"source resumed beside a discarded destination", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideDiscarded)
			c.src.looked = func(f *fakeVMM) { f.role = "receive" }
		}, "resolve resume a", "", `report role "receive" in migration id a`},
		{"source resumed after the destination's discard", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.looked = func(f *fakeVMM) { f.role = "receive" }
		}, "resolve resume a", "resolve discard a", `report role "receive" in migration id a`},
		{"destination resumed beside a migrated source", func(c *runCase) {
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.looked = func(f *fakeVMM) { f.role = "send" }
		}, "", "resolve resume a", `report role "send" in migration id a`},
	} {
		for _, id := range []string{"a", ""} {
			t.Run(tc.name+map[string]string{"a": " (run)", "": " (-resolve)"}[id], func(t *testing.T) {
				c := newRunCase(t)
				c.src.id, c.dst.id = "a", "a"
				tc.set(c)
				v, text, err := c.resolveInProcess(t, id, 0)
				if v != verdictManual || err == nil {
					t.Errorf("verdict %d, err %v: want manual, an error", v, err)
				}
				c.wantAsked(t, tc.src, tc.dst)
				wantSays(t, text, tc.say, "cannot be resolved")
				wantSaysNone(t, text, "is now running")
				wantNoCommand(t, text, "to a VMM whose part in the migration it cannot tell")
			})
		}
	}
}

// TestRolesAdviceSaysActsDone: where a resolve stops on wrong roles,
// its advice says what it did, from the acts it recorded: each that
// took, or may have (answered in the wrong role: unconfirmed), never
// "Nothing was moved" after one did; and "Nothing was moved" where no
// act was sent (the roles found at a look). The error (manual's cause)
// says the same: "no further act is sent" after an act, "neither side
// is moved" only where none was sent (until then it said "neither side
// is moved" in the first case too, beside the advice's acts). Before,
// the advice said
// "Nothing was moved" after the destination's discard took and the
// source's resume was answered in the wrong role (and may have run the
// guest there).
func TestRolesAdviceSaysActsDone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func(c *runCase)
		says, not []string
	}{
		{"destination discarded, then the source's resume answered in the wrong role", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.looked = func(f *fakeVMM) { f.role = "receive" }
		}, []string{"This resolve acted: discard on the destination took; resume on the source may have taken (unconfirmed). " +
			"Nothing more was moved.", "no further act is sent"}, []string{"Nothing was moved", "neither side is moved"}},
		{"the roles found at a look", func(c *runCase) {
			c.src.role, c.dst.role = "receive", "send"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, []string{"the wrong way round", "Nothing was moved.", "neither side is moved"}, []string{"This resolve acted", "no further act"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			tc.set(c)
			v, text, err := c.resolveInProcess(t, "a", 0)
			if v != verdictManual || err == nil {
				t.Errorf("verdict %d, err %v: want manual, an error", v, err)
			}
			wantSays(t, text, tc.says...)
			wantSaysNone(t, text, tc.not...)
		})
	}
}
