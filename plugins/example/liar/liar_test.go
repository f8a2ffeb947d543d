package liar_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/plugins/example/liar"
)

const pluginName = "ferry-hint-example-liar"

func TestMain(m *testing.M) {
	hinttest.Main(m, map[string]func() hint.Provider{
		pluginName: func() hint.Provider { return liar.New(hint.Logger(liar.Name)) },
	})
}

// TestConformance: the one well-formed lie (duplicates and overlaps of
// true zero pages) keeps the whole contract, in process and as a plugin.
func TestConformance(t *testing.T) {
	overlap := hinttest.WithConfig(hint.Config{"lie": liar.LieOverlap})
	t.Run("InProcess", func(t *testing.T) {
		hinttest.Run(t, func(*testing.T, hint.VM, hint.Host) hint.Provider { return liar.New(hclog.NewNullLogger()) }, overlap)
	})
	t.Run("Plugin", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: plugin processes")
		}
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			return hinttest.Launch(t, pluginName, vm.Files)
		}, overlap)
	})
}

// answer is one Hints call: the ranges it emitted, and those emitted
// after it returned.
type answer struct {
	mu       sync.Mutex
	ranges   []hint.Range
	returned bool
	late     []hint.Range
}

func (a *answer) emit(rs []hint.Range) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.returned {
		a.late = append(a.late, rs...)
		return nil
	}
	a.ranges = append(a.ranges, rs...)
	return nil
}

func ask(t *testing.T, p hint.Provider, ram *hinttest.RAM, lie string) *answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Configure(ctx, hint.Config{"lie": lie}, ram.VM, nil); err != nil {
		t.Fatal(err)
	}
	a := &answer{}
	if err := p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(5 * time.Second)}, a.emit); err != nil {
		t.Fatalf("lie %s: Hints: %v", lie, err)
	}
	a.mu.Lock()
	a.returned = true
	a.mu.Unlock()
	time.Sleep(2 * liar.LateDelay)
	if err := p.Close(ctx, true); err != nil { // waits for late answers in process
		t.Errorf("Close: %v", err)
	}
	return a
}

// TestLies: each lie has the shape it promises, and hint.CheckRanges
// drops exactly the malformed ones; the false zero pages are pages with
// data; a late answer reaches an in-process caller after Hints returned,
// but never crosses the plugin boundary.
func TestLies(t *testing.T) {
	ram := hinttest.NewRAM(t)
	pages := ram.Pages()
	var dataPages int
	for p := range pages {
		if hinttest.IsData(p) {
			dataPages++
		}
	}
	zero, _, err := liar.Scan(context.Background(), ram.VM)
	if err != nil {
		t.Fatal(err)
	}
	zeroRanges := len(zero)
	providers := map[string]func(t *testing.T) hint.Provider{
		"InProcess": func(*testing.T) hint.Provider { return liar.New(hclog.NewNullLogger()) },
		"Plugin":    func(t *testing.T) hint.Provider { return hinttest.Launch(t, pluginName, ram.VM.Files) },
	}
	for mode, newProvider := range providers {
		t.Run(mode, func(t *testing.T) {
			p := newProvider(t)
			check := func(lie string, wantValid, wantDropped int) *answer {
				t.Helper()
				a := ask(t, p, ram, lie)
				ok, dropped := hint.CheckRanges(a.ranges, pages)
				if len(ok) != wantValid || int(dropped) != wantDropped {
					t.Errorf("lie %s: %d valid and %d dropped ranges; want %d and %d", lie, len(ok), dropped, wantValid, wantDropped)
				}
				return a
			}
			check(liar.LieOutside, 0, len(liar.Outside(pages)))
			check(liar.LieAbsurd, 0, len(liar.Absurd()))
			a := check(liar.LieOverlap, len(liar.Overlap(zero)), 0)
			for _, r := range a.ranges {
				for q := r.First; q < r.First+r.Count; q++ {
					if !ram.Zero(q) {
						t.Fatalf("lie overlap: page %d holds data", q)
					}
				}
			}
			a = check(liar.LieInUse, countRanges(ram, true), 0)
			n := 0
			for _, r := range a.ranges {
				for q := r.First; q < r.First+r.Count; q++ {
					if ram.Zero(q) {
						t.Fatalf("lie inuse: page %d is zero", q)
					}
					n++
				}
			}
			if n != dataPages {
				t.Errorf("lie inuse reported %d pages; %d hold data", n, dataPages)
			}
			a = check(liar.LieLate, 0, 0)
			a.mu.Lock()
			late := len(a.late)
			a.mu.Unlock()
			switch {
			case mode == "InProcess" && late != zeroRanges:
				t.Errorf("in process, the late answer brought %d ranges, want %d", late, zeroRanges)
			case mode == "Plugin" && late != 0:
				t.Errorf("as a plugin, %d ranges arrived after Hints returned", late)
			}
			check(liar.LieAll, len(liar.Overlap(zero))+countRanges(ram, true), len(liar.Outside(pages))+len(liar.Absurd()))
		})
	}
}

// countRanges counts the runs of pages that hold data (data) or not.
func countRanges(ram *hinttest.RAM, data bool) int {
	n := 0
	prev := false
	for p := range ram.Pages() {
		cur := !ram.Zero(p) == data
		if cur && !prev {
			n++
		}
		prev = cur
	}
	return n
}
