package hinttest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
)

// lateProvider answers every Hints call 1 s after it began, whatever its
// context says.
func lateProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "late", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc:    func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return nil },
		HintsFunc: func(context.Context, hint.Request, func([]hint.Range) error) error {
			time.Sleep(time.Second)
			return nil
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// modeEnv selects what TestLateProviderRun runs the suite against.
const modeEnv = "HINTTEST_LATE_MODE"

// TestLateProviderFails: a provider whose Hints ignores its context and
// answers 1 s late fails the suite's Hints test in process, with a
// message that names the deadline, and over gRPC, where the plugin side
// refuses the next Hints while the late one still runs. The suite runs
// in a child process (TestLateProviderRun), since it must fail.
func TestLateProviderFails(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the suite in a child process")
	}
	for mode, want := range map[string][]string{
		"inprocess": {"Hints still running ", "ms after its deadline (Request.Deadline), ",
			"a provider's Hints must return when its context ends"},
		"grpc": {"Hints = refused: the provider's Hints for generation 1 is still running",
			"a provider's Hints must return when its context ends"},
	} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestLateProviderRun$", "-test.v")
			cmd.Env = append(os.Environ(), modeEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a provider that answers 1 s late:\n%s", out)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the suite's output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestLateProviderRun is TestLateProviderFails's child: the suite's
// Hints test against lateProvider, in process or over gRPC.
func TestLateProviderRun(t *testing.T) {
	mode := os.Getenv(modeEnv)
	if mode == "" {
		t.Skip("run by TestLateProviderFails")
	}
	hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
		if mode == "inprocess" {
			return lateProvider()
		}
		client, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{
			hint.PluginName: &hint.GRPCPlugin{Impl: lateProvider(), Files: vm.Files},
		})
		t.Cleanup(func() { client.Close() })
		raw, err := client.Dispense(hint.PluginName)
		if err != nil {
			t.Fatal(err)
		}
		return raw.(hint.Provider)
	}, hinttest.Only("the late provider breaks Hints only", "Hints"))
}
