package hint_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
)

// TestConformance runs the suite against the test providers in process,
// through the gRPC client and server in this process (with go-plugin's
// broker for Host callbacks), and as plugin processes started by Launch.
func TestConformance(t *testing.T) {
	type maker func(t *testing.T, vm hint.VM) hint.Provider
	providers := []struct {
		name   string
		plugin string
		make   func() hint.Provider
		opts   []hinttest.Option
	}{
		{"zero", "ferry-hint-zero", func() hint.Provider { return newZeroProvider() }, nil},
		{"balloon", "ferry-hint-balloon", func() hint.Provider { return newBalloonProvider(quietLogger()) },
			[]hinttest.Option{hinttest.WithHost(func(t *testing.T, _ *hinttest.RAM) hint.Host { return fakeBalloon(nil) })}},
	}
	for _, p := range providers {
		modes := []struct {
			name string
			make maker
		}{
			{"InProcess", func(*testing.T, hint.VM) hint.Provider { return p.make() }},
			{"GRPC", func(t *testing.T, vm hint.VM) hint.Provider { return overGRPC(t, p.make(), vm.Files) }},
			{"Plugin", func(t *testing.T, vm hint.VM) hint.Provider { return launch(t, p.plugin, vm.Files) }},
		}
		for _, m := range modes {
			t.Run(p.name+"/"+m.name, func(t *testing.T) {
				if testing.Short() && m.name == "Plugin" {
					t.Skip("-short: plugin processes")
				}
				hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider { return m.make(t, vm) }, p.opts...)
			})
		}
	}
}

// overGRPC serves impl through the plugin's gRPC server and client in
// this process, over a unix socket, with go-plugin's broker between them.
func overGRPC(t *testing.T, impl hint.Provider, files []*os.File) hint.Provider {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{
		hint.PluginName: &hint.GRPCPlugin{Impl: impl, Files: files},
	})
	raw, err := client.Dispense(hint.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	p := raw.(hint.Provider)
	t.Cleanup(func() {
		// A final Close stops serving the Host; the client's Close asks
		// the server to stop (go-plugin's controller: stopping it here
		// too would race with that).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx, true)
		client.Close()
	})
	return p
}

// fakeBalloon is a VMM whose guest hints the never-touched pages of the
// suite's first region (and some addresses outside RAM) in every session;
// done counts BalloonDone calls.
func fakeBalloon(done *atomic.Int32) *hint.MockHost {
	return &hint.MockHost{
		BalloonHintFunc: func(ctx context.Context) ([]hint.GPARange, error) {
			var out []hint.GPARange
			for p := uint64(4); p < 2048; p += 8 {
				out = append(out, hint.GPARange{GPA: p * 4096, Size: 4 * 4096})
			}
			out = append(out, hint.GPARange{GPA: 1 << 40, Size: 1 << 20}) // not RAM
			return out, ctx.Err()
		},
		BalloonDoneFunc: func(context.Context) error {
			if done != nil {
				done.Add(1)
			}
			return nil
		},
	}
}
