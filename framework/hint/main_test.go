package hint_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// The test binary doubles as the plugin binaries: TestMain links it
// under the names of plugins below, and a process started under one of
// them serves that plugin instead of running tests.
var plugins = map[string]func() hint.Provider{
	"ferry-hint-zero":    func() hint.Provider { return newZeroProvider() },
	"ferry-hint-balloon": func() hint.Provider { return newBalloonProvider(hint.Logger("balloon")) },
	"ferry-hint-files":   filesProvider,
	"ferry-hint-crash":   crashProvider,
	"ferry-hint-hang":    hangProvider,
}

// transportName serves a transport, which a hint host must refuse.
const transportName = "ferry-transport-mock"

// pluginDir holds the links; set by TestMain.
var pluginDir string

func TestMain(m *testing.M) {
	switch name := filepath.Base(os.Args[0]); {
	case plugins[name] != nil:
		hint.Serve(plugins[name]())
		os.Exit(0)
	case name == transportName:
		transport.Serve(&transport.Mock{})
		os.Exit(0)
	case name == hostName:
		os.Exit(host())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir, err = os.MkdirTemp("", "ferry-hint-plugins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(pluginDir)
	for _, name := range append(slices.Collect(maps.Keys(plugins)), hostName, transportName) {
		if err := os.Symlink(exe, filepath.Join(pluginDir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// launch starts plugin name with files; the test kills it.
func launch(t *testing.T, name string, files []*os.File) *hint.Plugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, filepath.Join(pluginDir, name), files, testLogger(t))
	if err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// testLogger collects the host's and the plugins' logs (a plugin's
// non-JSON stderr, such as a race report, arrives at Debug). Warnings
// and errors go to the test log; a data race in a plugin fails the test.
func testLogger(t *testing.T) hclog.Logger {
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
	w.all.WriteString(s)
	w.race = w.race || strings.Contains(s, "DATA RACE")
	if !w.ended && (strings.Contains(s, "[ERROR]") || strings.Contains(s, "[WARN]")) {
		w.t.Log(strings.TrimSpace(s))
	}
	return len(p), nil
}

// String is everything logged so far.
func (w *logSink) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *logSink) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.race {
		w.t.Errorf("a plugin process reported a data race:\n%s", w.all.String())
	}
}

// quietLogger drops everything.
func quietLogger() hclog.Logger { return hclog.NewNullLogger() }

// hclogTo is a host logger writing everything to w.
func hclogTo(w *logSink) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: w})
}
