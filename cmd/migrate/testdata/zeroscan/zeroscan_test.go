package zeroscan_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"

	"example.com/zeroscan"
)

const pluginName = "ferry-hint-zeroscan"

// TestMain makes the test binary double as the plugin (hinttest.Main).
func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return zeroscan.New(hint.Logger(zeroscan.Name)) },
	})
}

// config is a block as the job file writes it.
var config = hint.Config{"min_gpa": "0x1000", "max_gpa": "0x100100000"}

func TestConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider {
			return zeroscan.New(hclog.NewNullLogger())
		}, hinttest.WithConfig(config))
	})
	t.Run("Plugin", func(t *testing.T) {
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			return hinttest.Launch(t, pluginName, vm.Files)
		}, hinttest.WithConfig(config))
	})
}

// TestPages: the provider reports exactly the suite's zeroed pages (page
// % 8 == 3: written with zeros) inside the range, and no hole.
func TestPages(t *testing.T) {
	ram := hinttest.NewRAM(t)
	p := zeroscan.New(hclog.NewNullLogger())
	ctx := context.Background()
	if err := p.Configure(ctx, hint.Config{"min_gpa": int64(0x1000), "max_gpa": int64(0x100100000)}, ram.VM, &hint.MockHost{}); err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx, true)
	got := map[uint64]bool{}
	err := p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(5 * time.Second)}, func(rs []hint.Range) error {
		for _, r := range rs {
			for q := r.First; q < r.First+r.Count; q++ {
				got[q] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for q := uint64(0); q < ram.Pages(); q++ {
		gpa, _ := ram.VM.GPA(q)
		want := q%8 == 3 && gpa >= 0x1000 && gpa < 0x100100000
		if got[q] != want {
			t.Errorf("page %d (%#x): reported %v, want %v", q, gpa, got[q], want)
		}
	}
}

// TestBadRange: max_gpa at or below min_gpa is a bad configuration.
func TestBadRange(t *testing.T) {
	p := zeroscan.New(hclog.NewNullLogger())
	err := p.Configure(context.Background(), hint.Config{"min_gpa": int64(0x2000), "max_gpa": int64(0x1000)}, hint.VM{}, &hint.MockHost{})
	if !errors.Is(err, hint.ErrBadConfig) {
		t.Errorf("Configure: %v, want ErrBadConfig", err)
	}
}
