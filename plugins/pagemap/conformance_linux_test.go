package pagemap

import (
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
)

// pluginName is the name under which the test binary serves this
// provider as a plugin process, as cmd/ferry-hint-pagemap does.
const pluginName = "ferry-hint-pagemap"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return New(hint.Logger(hint.PluginName)) },
	})
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
				return hinttest.Launch(t, pluginName, vm.Files)
			}, hinttest.WithConfig(hint.Config{"method": method}))
		})
	}
}
