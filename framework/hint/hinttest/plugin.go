package hinttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// pluginDir holds the links Main makes to the test binary.
var pluginDir string

// Main is a TestMain for a provider's package that runs the suite over
// real gRPC: the test binary doubles as the plugin binaries. Started
// under one of the names in plugins (by Launch), it serves that provider
// through hint.Serve, as the provider's cmd/ main does; otherwise it links
// itself under those names in a temporary directory and runs the tests.
//
//	func TestMain(m *testing.M) {
//		hinttest.Main(m, map[string]func() hint.Provider{
//			"ferry-hint-example-static": func() hint.Provider { return static.New(hint.Logger(static.Name)) },
//		})
//	}
func Main(m *testing.M, plugins map[string]func() hint.Provider) {
	if newProvider, ok := plugins[filepath.Base(os.Args[0])]; ok {
		hint.Serve(newProvider())
		os.Exit(0)
	}
	os.Exit(runTests(m, plugins))
}

func runTests(m *testing.M, plugins map[string]func() hint.Provider) int {
	exe, err := os.Executable()
	if err == nil {
		pluginDir, err = os.MkdirTemp("", "ferry-hinttest-plugins")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(pluginDir)
	for name := range plugins {
		if err := os.Symlink(exe, filepath.Join(pluginDir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// Launch starts the test binary as the plugin called name (one Main
// registered) with the RAM files, and kills it when the test ends. The
// plugin's warnings and errors go to the test log, and a data race the
// plugin reports fails the test.
func Launch(t *testing.T, name string, files []*os.File) *hint.Plugin {
	t.Helper()
	if pluginDir == "" {
		t.Fatal("hinttest.Launch needs hinttest.Main in the package's TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	p, err := hint.Launch(ctx, filepath.Join(pluginDir, name), files, Logger(t))
	if err != nil {
		t.Fatalf("launch plugin %s: %v", name, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Logger is a host logger for tests: everything at Debug is kept,
// warnings and errors also go to the test log, and a data race a plugin
// process reports (it arrives as plain stderr) fails the test.
func Logger(t *testing.T) hclog.Logger {
	w := &logSink{t: t}
	t.Cleanup(w.finish)
	return hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: w})
}

type logSink struct {
	mu    sync.Mutex
	t     *testing.T
	all   strings.Builder
	race  bool
	ended bool
}

func (w *logSink) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := string(p)
	if w.all.Len() < 1<<20 {
		w.all.WriteString(s)
	}
	w.race = w.race || strings.Contains(s, "DATA RACE")
	if !w.ended && (strings.Contains(s, "[ERROR]") || strings.Contains(s, "[WARN]")) {
		w.t.Log(strings.TrimSpace(s))
	}
	return len(p), nil
}

// finish runs when the test ends; the plugin may still write for a
// moment (Kill runs after it), so it waits briefly for a race report.
func (w *logSink) finish() {
	time.Sleep(10 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.race {
		w.t.Errorf("a plugin process reported a data race:\n%s", w.all.String())
	}
}
