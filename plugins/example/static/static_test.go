package static_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/plugins/example/static"
)

// pluginName is the name under which the test binary serves the provider
// as a plugin process, as cmd/ferry-hint-example-static does.
const pluginName = "ferry-hint-example-static"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return static.New(hint.Logger(static.Name)) },
	})
}

// config covers pages 4-15 and the first MiB of the region at 4 GiB
// (pages 2048-2303); the last range lies in the hole after 8 MiB.
var config = hint.Config{"ranges": "0x4000-0x10000, 0x100000000-0x100100000,0x900000-0xa00000"}

var want = []hint.Range{{First: 4, Count: 12}, {First: 2048, Count: 256}}

func TestConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider {
			return static.New(hclog.NewNullLogger())
		}, hinttest.WithConfig(config))
	})
	t.Run("Plugin", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: plugin processes")
		}
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			return hinttest.Launch(t, pluginName, vm.Files)
		}, hinttest.WithConfig(config))
	})
}

// TestHints: the configured ranges, as pages of the VM's RAM, in every
// generation, in process and as a plugin.
func TestHints(t *testing.T) {
	ram := hinttest.NewRAM(t)
	for name, p := range map[string]hint.Provider{
		"in process": static.New(hclog.NewNullLogger()),
		"plugin":     hinttest.Launch(t, pluginName, ram.VM.Files),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Configure(ctx, config, ram.VM, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for gen := uint64(1); gen <= 2; gen++ {
			var got []hint.Range
			err := p.Hints(ctx, hint.Request{Generation: gen, Deadline: time.Now().Add(time.Second)}, func(rs []hint.Range) error {
				got = append(got, rs...)
				return nil
			})
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s, generation %d: %v, %v; want %v", name, gen, got, err, want)
			}
		}
		if err := p.Configure(ctx, hint.Config{"ranges": "0x1000"}, ram.VM, nil); !errors.Is(err, hint.ErrBadConfig) {
			t.Errorf("%s: Configure with a bad range = %v; want ErrBadConfig", name, err)
		}
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []hint.GPARange
	}{
		{"", nil},
		{"  ", nil},
		{"0x1000-0x3000", []hint.GPARange{{GPA: 0x1000, Size: 0x2000}}},
		{"4096-8192, 0x100000000 - 0x100001000", []hint.GPARange{{GPA: 4096, Size: 4096}, {GPA: 1 << 32, Size: 4096}}},
	} {
		got, err := static.Parse(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"0x1000", "1-", "-1", "x-y", "0x2000-0x1000", "5-5", "1-2,,3-4", "0x1-0x10000000000000000"} {
		if got, err := static.Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v; want an error", bad, got)
		}
	}
}
