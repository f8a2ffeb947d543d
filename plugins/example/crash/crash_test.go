package crash_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/plugins/example/crash"
)

const pluginName = "ferry-hint-example-crash"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return crash.New(hint.Logger(crash.Name)) },
	})
}

// TestConformance: the provider describes itself properly; everything
// past Configure ends its process by design (in process, the test's).
func TestConformance(t *testing.T) {
	only := hinttest.Only("the provider exits its process by design", "Info", "Schema")
	t.Run("InProcess", func(t *testing.T) {
		hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider { return crash.New(hclog.NewNullLogger()) }, only)
	})
	t.Run("Plugin", func(t *testing.T) {
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			return hinttest.Launch(t, pluginName, vm.Files)
		}, only)
	})
}

// TestCrash: the call the process dies in fails with ErrPluginGone well
// before any deadline, and so does every later call, at once.
func TestCrash(t *testing.T) {
	for _, when := range []string{crash.WhenConfigure, crash.WhenHints, crash.WhenBalloon} {
		t.Run(when, func(t *testing.T) {
			ram := hinttest.NewRAM(t)
			p := hinttest.Launch(t, pluginName, ram.VM.Files)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := p.Configure(ctx, hint.Config{"when": when}, ram.VM, &hint.MockHost{})
			if when != crash.WhenConfigure {
				if err != nil {
					t.Fatalf("Configure: %v", err)
				}
				start := time.Now()
				err = p.Hints(ctx, hint.Request{Generation: 1, Deadline: start.Add(10 * time.Second)}, func([]hint.Range) error { return nil })
				if d := time.Since(start); d > 5*time.Second { // well before the deadline, with room for a loaded machine
					t.Errorf("Hints that ended the process took %v", d)
				}
			}
			if !errors.Is(err, hint.ErrPluginGone) {
				t.Errorf("the call that ended the process = %v; want ErrPluginGone", err)
			}
			select {
			case <-p.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed 5s after the process exited")
			}
			start := time.Now()
			_, e1 := p.Info(ctx)
			e2 := p.Configure(ctx, nil, ram.VM, nil)
			e3 := p.Hints(ctx, hint.Request{Generation: 2}, func([]hint.Range) error { return nil })
			e4 := p.Close(ctx, true)
			for i, err := range []error{e1, e2, e3, e4} {
				if !errors.Is(err, hint.ErrPluginGone) {
					t.Errorf("call %d after the crash = %v; want ErrPluginGone", i+1, err)
				}
			}
			if d := time.Since(start); d > 3*time.Second { // at once: room for a loaded machine, none for a call that waits
				t.Errorf("calls after the crash took %v", d)
			}
		})
	}
}

// TestBadWhen: an unknown moment is a configuration error, and the
// process lives on.
func TestBadWhen(t *testing.T) {
	err := crash.New(hclog.NewNullLogger()).Configure(context.Background(), hint.Config{"when": "never"}, hint.VM{}, nil)
	if !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("when never = %v; want ErrBadConfig", err)
	}
}
