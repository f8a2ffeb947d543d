package main

import (
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunUndoneJSONSaysWhy: Ctrl-C during a migration whose source is
// a VMM from before api.IDsHonoured: migrate sends it no migrate-cancel
// (it would ignore the id), prints the line to run by hand, and follows
// the migration to its end, which completes; the source's VMM then
// exits before its last status is read (its shutdown waited for the
// handover), and the destination runs the guest. Nothing went wrong
// after the handover, but the cancel not sent fails the run (run's
// rs.undone), and the JSON report must say why, as migrate prints it.
// Before, run returned the undone error with the report's error empty:
// migrate -json printed "status": "completed" (resolved destination)
// with no error, and exited 1.
func TestRunUndoneJSONSaysWhy(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(-1, engine.StatusCompleted, api.SideMigrated)
	c.src.doneAfter = 500 * time.Millisecond // it completes after the interrupt
	c.src.older, c.src.exitWhenDone = true, true
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	rep, _, err := c.run(c.src.interruptWhenSending(t), t)
	if err == nil {
		t.Fatal("run succeeded: want it failed, the cancel not sent")
	}
	wantSays(t, err.Error(), "migrate-cancel not sent to "+c.src.sock)
	m := reportJSON(t, rep)
	if m["status"] != "completed" || m["resolved"] != "destination" {
		t.Errorf("JSON status %v, resolved %v: want completed, destination (the guest runs there)", m["status"], m["resolved"])
	}
	if m["error"] != err.Error() {
		t.Errorf("JSON error %q, want what migrate prints: %q", m["error"], err.Error())
	}
}
