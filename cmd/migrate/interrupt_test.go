package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// The test binary doubles as migrate itself, for tests that signal it.
func init() {
	testPlugins["migrate"] = func() int { return realMain(os.Args[1:], os.Stdout, os.Stderr) }
}

// TestInterruptedWhileChecking: Ctrl-C while migrate asks the job's
// plugins for their schemas ends it with a cancelled report that says
// nothing was started, and the plugin it was asking is gone when it
// returns. Before, the signal came before migrate listened for it: the
// process died silently (no report, exit by signal) and the plugin ran
// on, orphaned.
func TestInterruptedWhileChecking(t *testing.T) {
	dir := t.TempDir()
	notes := filepath.Join(dir, "schema.log")
	job := filepath.Join(dir, "job.hcl")
	src := `source { control = "` + dir + `/src.sock" }
destination { control = "` + dir + `/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "slowa" {}
`
	if err := os.WriteFile(job, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	cmd := exec.Command(plugintest.Path(t, "migrate"), "-config", job, "-json", "-plugin-dir", plugintest.Dir())
	cmd.Env = append(os.Environ(), "FERRY_TEST_SCHEMA_LOG="+notes)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var plugin int
	for deadline := time.Now().Add(20 * time.Second); plugin == 0; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(notes)
		fmt.Sscanf(string(b), "begin %d", &plugin)
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the slow provider was not asked for its schema within 20 s: %s", stderr.String())
		}
	}
	defer syscall.Kill(plugin, syscall.SIGKILL)
	cmd.Process.Signal(os.Interrupt)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second): // the provider answers after 20 s
		cmd.Process.Kill()
		t.Fatal("migrate still ran 10 s after Ctrl-C while checking the job")
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("migrate ended with %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	var rep report
	if jerr := json.Unmarshal([]byte(stdout.String()), &rep); jerr != nil || rep.Status != engine.StatusCancelled {
		t.Fatalf("report %q (%v), want status cancelled", stdout.String(), jerr)
	}
	if rep.Exit != 1 {
		t.Errorf("report's exit %d, want 1, migrate's", rep.Exit)
	}
	if !strings.Contains(stderr.String(), "interrupted while checking the job: nothing was started") {
		t.Errorf("stderr does not say what happened:\n%s", stderr.String())
	}
	if plugintest.Running(plugin) {
		t.Errorf("the provider migrate was asking (pid %d) still runs after migrate returned", plugin)
	}
}
