package vmtest_test

import (
	"os"
	"sync"
	"testing"

	"github.com/ferryvm/ferry/framework/plugintest"
)

// The real plugin binaries, built once per test binary from this module's
// cmd/ (an embedder ships them, e.g. as `make` leaves them in bin/plugins).
var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
)

// pluginNames are the binaries the embedding tests, the example, the
// setup benchmark and the report tests (report_test.go: misbehaving
// example providers) use.
var pluginNames = []string{"ferry-transport-tcp", "ferry-hint-balloon", "ferry-hint-example-static",
	"ferry-hint-example-hang", "ferry-hint-example-crash", "ferry-hint-example-liar-free"}

// pluginDir builds the plugins into a temporary directory (removed by
// TestMain) and returns it.
func pluginDir() (string, error) {
	buildOnce.Do(func() { builtDir, buildErr = buildPlugins() })
	return builtDir, buildErr
}

func buildPlugins() (string, error) {
	dir, err := os.MkdirTemp("", "vmtest-plugins")
	if err != nil {
		return "", err
	}
	if err := plugintest.BuildCommands(dir, pluginNames...); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// plugins is pluginDir for a test.
func plugins(t testing.TB) string {
	t.Helper()
	dir, err := pluginDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}
