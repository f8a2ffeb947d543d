package plugproc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// startHoldingOutput starts the test plugin with a helper process that
// inherited its stdout and stderr, and returns the helper's pid; the
// test kills the helper when it ends.
func startHoldingOutput(t *testing.T) (*plugproc.Process, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "helper")
	p := start(t, nil, filepath.Join(t.TempDir(), "opened"), envHelper+"="+pidFile, envHelperOutput+"=1")
	b, err := os.ReadFile(pidFile)
	var helper int
	if _, serr := fmt.Sscan(string(b), &helper); err != nil || serr != nil || helper <= 0 {
		t.Fatalf("helper pid %q: %v %v", b, err, serr)
	}
	t.Cleanup(func() { syscall.Kill(helper, syscall.SIGKILL) })
	return p, helper
}

// TestKillHelperHoldsOutput: Kill returns, within a few seconds, when a
// process the plugin started holds the plugin's stdout and stderr (a
// tool it shelled out to, which inherited them), whether Kill finds the
// plugin running (the helper is noted and killed) or dead on its own
// (the helper cannot be told from a stranger and runs on). go-plugin
// reaps a plugin only once both pipes ended, and its Kill waits for
// that: before, Kill (and with it a transport's Close and a post-copy
// reconnect's CloseHoldingListeners, or a hint provider's Kill) waited
// as long as the helper lived.
func TestKillHelperHoldsOutput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		crashed bool // the plugin died on its own before Kill
	}{{"running", false}, {"crashed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p, helper := startHoldingOutput(t)
			if tc.crashed {
				if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); plugintest.Running(p.Pid()); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the plugin still runs 10 s after SIGKILL")
					}
				}
			}
			killed := make(chan struct{})
			begin := time.Now()
			go func() {
				defer close(killed)
				p.Kill()
			}()
			const bound = 15 * time.Second // killGrace and go-plugin's own wait, with room
			select {
			case <-killed:
				t.Logf("Kill returned after %v", time.Since(begin).Round(time.Millisecond))
			case <-time.After(bound):
				syscall.Kill(helper, syscall.SIGKILL) // lets Kill return
				<-killed
				t.Fatalf("Kill had not returned %v after it began: the plugin's helper (pid %d) holds its output", bound, helper)
			}
			if tc.crashed {
				return // its helper was not noted: nothing tells it from a stranger's process
			}
			for deadline := time.Now().Add(5 * time.Second); plugintest.Running(helper); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the plugin's helper (pid %d) still runs 5 s after Kill returned", helper)
				}
			}
		})
	}
}

// TestCrashHelperHoldsOutput: a plugin that dies on its own while a
// process it started holds its stdout and stderr is seen to have ended
// (reaped, its exit status known, which is what makes later calls fail
// as plugin-gone) within a few seconds, without a Kill. go-plugin reaps
// only once both pipes ended, so before, such a plugin looked alive, every
// call to it failing as a broken connection, until somebody killed it.
func TestCrashHelperHoldsOutput(t *testing.T) {
	p, helper := startHoldingOutput(t)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	const bound = 10 * time.Second // outputGrace, with room
	for !p.Exit().Exited {
		if time.Since(begin) > bound {
			t.Fatalf("the plugin, killed %v ago, is not reaped: its helper (pid %d) holds its output", bound, helper)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if x := p.Exit(); x.Status != "signal: killed" {
		t.Errorf("exit status %q, want \"signal: killed\"", x.Status)
	}
	t.Logf("reaped %v after SIGKILL", time.Since(begin).Round(time.Millisecond))
}
