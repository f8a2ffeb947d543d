package pagemap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
)

// pluginName is the name under which the test binary serves this
// provider as a plugin process, as cmd/ferry-hint-pagemap does.
const pluginName = "ferry-hint-pagemap"

var pluginDir string

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == pluginName {
		hint.Serve(New(hint.Logger(hint.PluginName)))
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

// runTests links the test binary as the plugin and runs the tests.
func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err == nil {
		pluginDir, err = os.MkdirTemp("", "ferry-pagemap-plugin")
	}
	if err == nil {
		defer os.RemoveAll(pluginDir)
		err = os.Symlink(exe, filepath.Join(pluginDir, pluginName))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// TestConformance runs the hint kind's suite with every method, in
// process and as a plugin process over gRPC (the plugin reads the test
// process's maps and page tables: VM.PID is the test's pid).
func TestConformance(t *testing.T) {
	for _, method := range methods {
		t.Run(method+"/InProcess", func(t *testing.T) {
			hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider { return New(nil) },
				hinttest.WithConfig(hint.Config{"method": method}))
		})
		t.Run(method+"/Plugin", func(t *testing.T) {
			if testing.Short() {
				t.Skip("-short: plugin processes")
			}
			hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				p, err := hint.Launch(ctx, filepath.Join(pluginDir, pluginName), vm.Files,
					hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Warn, Output: os.Stderr}))
				if err != nil {
					t.Fatalf("launch: %v", err)
				}
				t.Cleanup(p.Kill)
				return p
			}, hinttest.WithConfig(hint.Config{"method": method}))
		})
	}
}
