package plugintest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ServeAPIVersion serves a plugin that speaks another plugin API version,
// for tests of the version rule (docs/ARCHITECTURE.md#versions). Call it
// from an init function: started as a link named prefix+N (made by
// CheckAPIRefused), the test binary runs serve(N) and exits before
// TestMain; under any other name it returns at once.
func ServeAPIVersion(prefix string, serve func(version uint)) {
	v, ok := strings.CutPrefix(filepath.Base(os.Args[0]), prefix)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		os.Exit(2)
	}
	serve(uint(n))
	os.Exit(0)
}

// CheckAPIRefused launches the test binary as a plugin of each version in
// versions (through ServeAPIVersion's prefix) and fails t unless launch
// refuses it with go-plugin's error naming both the plugin's version and
// current, the host's. launch returns a stop function for a plugin it
// wrongly started.
func CheckAPIRefused(t *testing.T, prefix string, current int, versions []int,
	launch func(ctx context.Context, path string) (stop func(), err error)) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, v := range versions {
		path := filepath.Join(dir, fmt.Sprintf("%s%d", prefix, v))
		if err := os.Symlink(exe, path); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		stop, err := launch(ctx, path)
		cancel()
		if err == nil {
			stop()
			t.Fatalf("a version-%d plugin was started by a version-%d host", v, current)
		}
		want := fmt.Sprintf("Plugin version: %d, Client versions: [%d]", v, current)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("version %d: %v, want it to say %q", v, err, want)
		}
		t.Logf("version %d: %v", v, err)
	}
}
