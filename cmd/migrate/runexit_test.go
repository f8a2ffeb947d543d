package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunExitIsProcessExit: migrate -json, run as its own process (the
// test binary as migrate) against two fake VMMs, prints exactly one
// JSON object on stdout however the run ends, and its exit is the
// process's own exit code: a migration completed (0), one whose
// handover ended unknown and the resolve found the guest on the
// destination (0) or resumed it on the source (1), a failed one (1), a
// source that stopped answering beside a destination that runs the
// guest (0: resolved there, the source quit), a run cancelled by
// SIGINT while it sends (1), and a refused job (2). The in-process
// tests (TestRunJSONErrorIsReason, TestEarlyExitJSON) check the report
// realMain builds; this one checks what a script reading the process
// gets. What it does not cover: a second signal, which ends migrate at
// once with no report, as documented.
func TestRunExitIsProcessExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(c *runCase)
		sigint  bool // Ctrl-C once the source got migrate-send
		refused bool // a job migrate refuses
		exit    int
		status  engine.Status
	}{
		{"completed", func(c *runCase) {
			c.src.finishWith(2, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, false, false, 0, engine.StatusCompleted},
		{"handover-unknown, resolved to the destination", func(c *runCase) {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.reportErr = "no answer to RUNNING"
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, false, false, 0, engine.StatusHandoverUnknown},
		{"handover-unknown, resolved to the source", func(c *runCase) {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.reportErr = "no answer to COMMIT"
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, false, false, 1, engine.StatusHandoverUnknown},
		{"failed", func(c *runCase) {
			c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
			c.src.reportErr = "the destination aborted"
		}, false, false, 1, engine.StatusFailed},
		{"the source stopped answering, the guest on the destination", func(c *runCase) {
			c.src.progress = engine.Progress{Phase: engine.PhaseState, Pass: 3}
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			go func() {
				c.src.waitStatuses(2)
				c.src.mu.Lock()
				c.src.statusDown, c.src.done, c.src.status, c.src.side = true, true, engine.StatusCompleted, api.SideMigrated
				c.src.mu.Unlock()
			}()
		}, false, false, 0, engine.StatusCompleted},
		{"cancelled", func(c *runCase) {}, true, false, 1, engine.StatusCancelled},
		{"job refused", func(c *runCase) {}, false, true, 2, engine.StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			job := filepath.Join(t.TempDir(), "job.hcl")
			text := "source { control = \"" + c.src.sock + "\" }\ndestination { control = \"" + c.dst.sock + "\" }\n" +
				"transport \"tcp\" { listen = \"127.0.0.1:7070\" }\n"
			if tc.refused {
				text += "bogus = 1\n"
			}
			if err := os.WriteFile(job, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var stdout, stderr strings.Builder
			cmd := exec.CommandContext(ctx, plugintest.Path(t, "migrate"), "-json", "-config", job, "-plugin-dir", plugintest.Dir())
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.sigint {
				sent := c.src.interruptWhenSending(t)
				select {
				case <-sent.Done():
				case <-ctx.Done():
				}
				cmd.Process.Signal(os.Interrupt)
			}
			err := cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			t.Logf("migrate: %v, exit %d\nstdout %s\nstderr %s\ncalls %s", err, code, stdout.String(), stderr.String(), c.callList())
			if code != tc.exit {
				t.Errorf("migrate exited %d, want %d", code, tc.exit)
			}
			m, keys := decodeOne(t, stdout.String())
			if m.Exit != code {
				t.Errorf("the report's exit is %d, the process's %d", m.Exit, code)
			}
			if keys["status"] != string(tc.status) {
				t.Errorf("status %v, want %s", keys["status"], tc.status)
			}
		})
	}
}
