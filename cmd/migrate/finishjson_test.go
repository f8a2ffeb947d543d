package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// reportJSON is rep as migrate -json prints it (writeReport), decoded.
func reportJSON(t *testing.T, rep report) map[string]any {
	t.Helper()
	var b strings.Builder
	writeReport(&b, rep, true)
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil {
		t.Fatalf("migrate -json printed %q: %v", b.String(), err)
	}
	return m
}

// TestFinishCompletedJSONSaysWhy: the source of migration a handed the
// guest over (its report says completed), and what finishCompleted finds
// after the handover makes migrate fail (exit 1). The JSON report must
// say so, not only stderr: its error is the message migrate prints, and
// its status stays completed (the handover did complete; no other status
// says where the guest runs: docs/JOBS.md). Before, every case but the
// post-copy page check printed "status": "completed" with no error, and
// the page check's printed the engine's error without what migrate said
// of it; an orchestrator that reads only the JSON saw success.
func TestFinishCompletedJSONSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    func(c *runCase)
		repErr string // the source's report's own error
		says   []string
	}{
		{"both run", func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning) // resumed by hand since
		}, "", []string{"BOTH the source", "stop one of them now"}},
		{"not the destination", func(c *runCase) {
			c.dst.role = "send"
		}, "", []string{"the source handed over, but", "not that migration's destination"}},
		{"destination not running", func(c *runCase) {
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, "", []string{"the source handed over, but the destination", "does not confirm that it runs the guest (its report: failed): its side is failed"}},
		{"destination gone", func(c *runCase) {
			c.dst.kill()
		}, "", []string{"the source handed over, but the destination", "does not confirm that it runs the guest: ", "receive.sock"}},
		{"source not quit (older VMM)", func(c *runCase) {
			c.src.older = true
		}, "", []string{"the source was not quit", "quit not sent to"}},
		{"post-copy page check", nil, "post-copy page check failed: 3 pages differed",
			[]string{"the guest runs on the destination, but: post-copy page check failed: 3 pages differed"}},
		{"both run, after a page check that failed", func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
		}, "post-copy page check failed: 3 pages differed",
			[]string{"BOTH the source", "post-copy page check failed: 3 pages differed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			if tc.set != nil {
				tc.set(c)
			}
			var log strings.Builder
			rep, err := finishCompleted(fakeJob(c.src, c.dst),
				report{Report: engine.Report{Status: engine.StatusCompleted, Error: tc.repErr}}, "a", nil, &log)
			t.Logf("err %v, calls %s\n%s", err, c.callList(), log.String())
			if err == nil {
				t.Fatal("finishCompleted succeeded: want it failed")
			}
			wantSays(t, err.Error(), tc.says...)
			m := reportJSON(t, rep)
			if m["status"] != "completed" {
				t.Errorf("JSON status %v, want completed: the handover completed", m["status"])
			}
			if m["error"] != err.Error() {
				t.Errorf("JSON error %q, want what migrate prints: %q", m["error"], err.Error())
			}
		})
	}
}

// TestFinishCompletedSourceNotHandedOver: the guest runs on migration
// a's destination (it received a, and says running), and by quitSource's
// look the VMM at the source's socket, a's sender, has not said it
// handed the guest over: it still says migrating (it did not answer the
// resolve that found the destination running, and has not heard how the
// handover ended), or handover-unknown. Such a source never resumes on
// its own beside a destination that runs the guest (after COMMIT only an
// ABORT resumes it: engine sender.commit), but it may end
// handover-unknown, paused until a resolve that nobody runs. migrate
// quits and resumes nothing there, says so plainly on stderr and in the
// JSON error with the command to run, and fails. Before, finishCompleted
// succeeded and said nothing: migrate exited 0, "completed", no error.
func TestFinishCompletedSourceNotHandedOver(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(f *fakeVMM)
		side api.Side
	}{
		{"migrating", func(f *fakeVMM) { f.finishWith(-1, "", "") }, api.SideMigrating},
		{"handover-unknown", func(f *fakeVMM) { f.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown) }, api.SideUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			tc.set(c.src)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			var log strings.Builder
			rep, err := finishCompleted(fakeJob(c.src, c.dst), report{Report: engine.Report{Status: engine.StatusCompleted}}, "a", nil, &log)
			t.Logf("err %v, calls %s\n%s", err, c.callList(), log.String())
			if err == nil {
				t.Fatal("finishCompleted succeeded: want it failed, the source left waiting")
			}
			wantSays(t, err.Error(), "the guest runs on the destination", c.src.sock, "says "+string(tc.side)+" in this migration",
				"not quit", "migrate -resolve -config job.hcl")
			if rep.Destination == nil {
				t.Error("no destination report: the destination that runs the guest was confirmed, its report is taken")
			}
			m := reportJSON(t, rep)
			if m["status"] != "completed" || m["error"] != err.Error() {
				t.Errorf("JSON status %v, error %q; want completed, with what migrate prints: %q", m["status"], m["error"], err.Error())
			}
			c.wantNothingAsked(t)
		})
	}
}
