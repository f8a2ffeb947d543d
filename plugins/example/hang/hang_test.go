package hang_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/plugins/example/hang"
)

const pluginName = "ferry-hint-example-hang"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return hang.New(hint.Logger(hang.Name)) },
	})
}

// newInProcess is a provider released when the test ends.
func newInProcess(t *testing.T) hint.Provider {
	p := hang.New(hclog.NewNullLogger())
	t.Cleanup(p.Release)
	return p
}

var ignore = hinttest.WithConfig(hint.Config{"mode": hang.ModeIgnore})

// TestConformance: mode "ctx" keeps the whole contract (it returns at
// the deadline, empty-handed). Mode "ignore" breaks it by design: in
// process the call never returns; as a plugin the host side still
// returns at every deadline, but the plugin side refuses the next Hints
// while the stuck call runs (the suite's Hints and HostNotSupported
// fail on that, see TestIgnoreAsPlugin), and a second window
// waits for it.
func TestConformance(t *testing.T) {
	t.Run("ctx/InProcess", func(t *testing.T) {
		hinttest.Run(t, func(t *testing.T, _ hint.VM, _ hint.Host) hint.Provider { return newInProcess(t) })
	})
	t.Run("ignore/InProcess", func(t *testing.T) {
		hinttest.Run(t, func(t *testing.T, _ hint.VM, _ hint.Host) hint.Provider { return newInProcess(t) },
			ignore, hinttest.Only("in process nothing can stop a call that ignores its context", "Info", "Schema"))
	})
	for _, mode := range []string{hang.ModeCtx, hang.ModeIgnore} {
		t.Run(mode+"/Plugin", func(t *testing.T) {
			if testing.Short() {
				t.Skip("-short: plugin processes")
			}
			opts := []hinttest.Option{hinttest.WithConfig(hint.Config{"mode": mode})}
			if mode == hang.ModeIgnore {
				opts = append(opts, hinttest.Exempt("the next Hints is refused, and a new window waits, while the stuck call runs",
					"Hints", "HostNotSupported", "Reconfigure"))
			}
			hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
				return hinttest.Launch(t, pluginName, vm.Files)
			}, opts...)
		})
	}
}

// TestIgnoreAsPlugin: a plugin stuck in Hints costs each request its
// deadline and nothing more; once the stuck call is 250 ms past its
// deadline, the next request is refused at once, as hung, saying why;
// Kill ends it.
func TestIgnoreAsPlugin(t *testing.T) {
	ram := hinttest.NewRAM(t)
	p := hinttest.Launch(t, pluginName, ram.VM.Files)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Configure(ctx, hint.Config{"mode": hang.ModeIgnore}, ram.VM, nil); err != nil {
		t.Fatal(err)
	}
	for gen := uint64(1); gen <= 3; gen++ {
		start := time.Now()
		dl := start.Add(100 * time.Millisecond)
		err := p.Hints(ctx, hint.Request{Generation: gen, Deadline: dl}, func([]hint.Range) error { return nil })
		// The stuck call never returns: the bound has room for a loaded machine.
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 100*time.Millisecond+3*time.Second {
			t.Errorf("generation %d: %v after %v; want DeadlineExceeded at 100ms", gen, err, time.Since(start))
		}
	}
	start := time.Now()
	err := p.Hints(ctx, hint.Request{Generation: 4, Deadline: start.Add(10 * time.Second)}, func([]hint.Range) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Hints for generation 1 is still running") ||
		time.Since(start) > 3*time.Second {
		t.Errorf("generation 4: %v after %v; want it refused at once, naming generation 1", err, time.Since(start))
	}
	if err := p.Close(ctx, true); err != nil {
		t.Errorf("Close(final) while Hints hangs: %v", err)
	}
	start = time.Now()
	p.Kill()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Kill took %v", d)
	}
	if _, err := p.Info(ctx); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Info after Kill = %v; want ErrPluginGone", err)
	}
}

// TestBadMode: an unknown mode is a configuration error.
func TestBadMode(t *testing.T) {
	err := hang.New(hclog.NewNullLogger()).Configure(context.Background(), hint.Config{"mode": "sometimes"}, hint.VM{}, nil)
	if !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("mode sometimes = %v; want ErrBadConfig", err)
	}
}
