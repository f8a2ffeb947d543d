package e2e

import (
	"os/exec"
	"testing"
	"time"
)

// TestExitedSeesZombie: waitPhase's check that migrate exited (exited)
// tells a process that ended, not yet waited for, from one that runs,
// without reaping it (cmd.Wait still works). Needs no KVM.
func TestExitedSeesZombie(t *testing.T) {
	done := exec.Command("true")
	running := exec.Command("sleep", "30")
	for _, c := range []*exec.Cmd{done, running} {
		if err := c.Start(); err != nil {
			t.Skipf("cannot start %s: %v", c.Path, err)
		}
	}
	defer running.Process.Kill()
	for end := time.Now().Add(10 * time.Second); !exited(done); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a process that ran `true` is not seen as exited after 10 s")
		}
	}
	if exited(running) {
		t.Fatal("a running `sleep 30` is seen as exited")
	}
	if err := done.Wait(); err != nil {
		t.Fatalf("Wait after exited: %v", err)
	}
}
