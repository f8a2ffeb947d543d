package plugintest

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// NoLeaks runs run once to warm up (gRPC and go-plugin start some
// process-wide goroutines once), then three times, and fails t unless the
// goroutines drop back to their count after the warm-up within 5 s and
// no child process is left: a plugin's launch and teardown leak nothing.
func NoLeaks(t *testing.T, run func()) {
	t.Helper()
	run()
	before := runtime.NumGoroutine()
	for range 3 {
		run()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after three runs:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
	if kids, err := ChildPIDs(); err != nil || len(kids) > 0 {
		t.Errorf("child processes left: %v (%v)", kids, err)
	}
}

// LaunchFails checks a kind's launch function against a start that
// cannot succeed: a context that ends during the start kills the plugin
// (the binary at path) and says so; a missing binary is named.
func LaunchFails(t *testing.T, path string, launch func(ctx context.Context, path string) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := launch(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Launch with an expired context = %v; want DeadlineExceeded", err)
	}
	if err := launch(context.Background(), "/nonexistent/plugin"); err == nil || !strings.Contains(err.Error(), "/nonexistent/plugin") {
		t.Errorf("Launch of a missing binary = %v", err)
	}
}
