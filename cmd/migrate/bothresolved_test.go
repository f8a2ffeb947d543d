package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestBothRunResolvedSaysBoth: where migrate finds the source and the
// destination of one migration both running the guest, the report's
// resolved, which says where the guest runs now (docs/JOBS.md), says
// both, and its error says BOTH, in JSON and in text: after a completed
// handover whose source was resumed since (finishCompleted), after a
// handover-unknown resolved to the destination whose source was resumed
// since, and after a handover-unknown whose resolve found both running
// (plan's verdictBothRun), and after a source that stopped answering
// (its status did not come back) whose resolve found both running.
// Before, the second printed "resolved":
// "destination" ("the guest runs on the destination"), and the third no
// resolved at all and the handover's own error alone, not BOTH: a
// reader of the JSON saw the guest on one side, or nowhere decided; the
// fourth, until it was added, status failed (the guest on the source
// alone), no resolved, and BOTH on stderr only, as "cleaning up".
func TestBothRunResolvedSaysBoth(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *runCase) (report, error)
	}{
		{"completed, then the source resumed", func(t *testing.T, c *runCase) (report, error) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			return finishCompleted(fakeJob(c.src, c.dst), report{Report: engine.Report{Status: engine.StatusCompleted}}, "a", nil, &strings.Builder{})
		}},
		{"resolved to the destination, then the source resumed", func(t *testing.T, c *runCase) (report, error) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			return finishCompleted(fakeJob(c.src, c.dst), report{Report: engine.Report{Status: engine.StatusHandoverUnknown,
				Error: "no answer to COMMIT"}, Resolved: "destination"}, "a", nil, &strings.Builder{})
		}},
		{"handover-unknown, both running", func(t *testing.T, c *runCase) (report, error) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideRunning)
			c.src.reportErr = "no answer to COMMIT"
			c.src.id, c.dst.id = "", "" // they take migrate's
			rep, _, err := c.run(t.Context(), t)
			return rep, err
		}},
		{"the source stopped answering, then both running", func(t *testing.T, c *runCase) (report, error) {
			c.src.id, c.dst.id = "", "" // they take migrate's
			c.src.progress = engine.Progress{Phase: engine.PhaseDirty, Pass: 3}
			go func() { // once migrate follows it: its status stops coming back, and it says it runs the guest (resumed by hand)
				c.src.waitStatuses(3)
				c.src.mu.Lock()
				c.src.statusDown, c.src.done, c.src.status, c.src.side = true, true, engine.StatusFailed, api.SideRunning
				c.src.mu.Unlock()
			}()
			rep, _, err := c.run(t.Context(), t)
			if err != nil {
				wantSays(t, err.Error(), "the source stopped answering during the migration (dirty, pass 3)")
			}
			return rep, err
		}},
		{"failed, the source running, then both running", func(t *testing.T, c *runCase) (report, error) {
			c.src.id, c.dst.id = "", "" // they take migrate's
			c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
			c.src.reportErr = "the destination aborted"
			rep, _, err := c.run(t.Context(), t)
			if err != nil {
				wantSays(t, err.Error(), "the destination aborted")
			}
			return rep, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			rep, err := tc.run(t, c)
			if err == nil {
				t.Fatal("succeeded: want it failed, BOTH run")
			}
			wantSays(t, err.Error(), "BOTH the source")
			m := reportJSON(t, rep)
			if m["resolved"] != "both" || m["error"] != err.Error() {
				t.Errorf("JSON resolved %v, error %q; want both, with what migrate prints: %q", m["resolved"], m["error"], err.Error())
			}
			var text strings.Builder
			printReport(&text, rep)
			wantSays(t, text.String(), "the guest runs on both sides")
		})
	}
}
