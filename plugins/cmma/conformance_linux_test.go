package cmma

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
)

// pluginName is the name under which the test binary serves this
// provider as a plugin process, as cmd/ferry-hint-cmma does.
const pluginName = "ferry-hint-cmma"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return New(hint.Logger(hint.PluginName)) },
	})
}

// s390Host is a VMM with CMMA for the suite's RAM: the frames of pages
// the suite never touched (page % 8 >= 4) are unused, answered like
// KVM_S390_CMMA_PEEK; on the plugin's side the calls cross go-plugin's
// broker.
func s390Host(t *testing.T, ram *hinttest.RAM) hint.Host {
	l, err := NewLayout(ram.VM.RAM)
	if err != nil {
		t.Fatal(err)
	}
	return &hint.MockHost{CMMABitsFunc: func(ctx context.Context, start uint64, count int) (uint64, []byte, error) {
		for _, s := range l {
			if start >= s.gfn && start < s.gfn+s.frames {
				v := make([]byte, min(uint64(count), s.gfn+s.frames-start))
				for i := range v {
					if (s.page+start-s.gfn+uint64(i))%8 >= 4 {
						v[i] = UsageUnused
					}
				}
				return start, v, ctx.Err()
			}
		}
		return 0, nil, fmt.Errorf("frame %#x is in no memslot (EFAULT)", start)
	}}
}

// TestConformance runs the hint kind's suite in process and as a plugin
// process over gRPC, with an s390 VMM, and (HostNotSupported) with a VMM
// that has no CMMA.
func TestConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider { return New(nil) }, hinttest.WithHost(s390Host))
	})
	t.Run("Plugin", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: plugin processes")
		}
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			return hinttest.Launch(t, pluginName, vm.Files)
		}, hinttest.WithHost(s390Host))
	})
}

// TestPluginNotSupported: over gRPC, the x86 VMM's ErrNotSupported comes
// back through the broker as ErrNotSupported, with no ranges.
func TestPluginNotSupported(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: plugin processes")
	}
	ram := hinttest.NewRAM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := hinttest.Launch(t, pluginName, ram.VM.Files)
	if err := p.Configure(ctx, nil, ram.VM, &x86Host{}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	n := 0
	err := p.Hints(ctx, hint.Request{Generation: 1}, func(rs []hint.Range) error { n += len(rs); return nil })
	if !errors.Is(err, hint.ErrNotSupported) || n != 0 {
		t.Fatalf("Hints over gRPC on x86: %v, %d ranges", err, n)
	}
	p.Close(ctx, true)
}
