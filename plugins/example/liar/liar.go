package liar

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Name is the provider's name: the label of its job block, and the
// binary ferry-hint-example-liar.
const Name = "example-liar"

// NameFree is the name of the liar that claims MeaningFree (NewFree),
// binary ferry-hint-example-liar-free: its lies are believed without a
// check, except by the strict page check (engine.Options.VerifyFree).
const NameFree = "example-liar-free"

// Lies.
const (
	LieOutside = "outside"
	LieAbsurd  = "absurd"
	LieOverlap = "overlap"
	LieInUse   = "inuse"
	LieLate    = "late"
	LieAll     = "all"
)

var lies = []string{LieOutside, LieAbsurd, LieOverlap, LieInUse, LieLate, LieAll}

// LateDelay is how long after Hints returned a late answer comes.
const LateDelay = 50 * time.Millisecond

// Provider implements hint.Provider.
type Provider struct {
	log     hclog.Logger
	name    string
	meaning hint.Meaning
	deflt   string         // the lie when the block names none
	late    sync.WaitGroup // late answers on their way

	mu  sync.Mutex
	vm  *hint.VM // nil: not configured
	lie string
}

// New returns an unconfigured provider that logs to log.
func New(log hclog.Logger) *Provider {
	return &Provider{log: log, name: Name, meaning: hint.MeaningZero, deflt: LieAll}
}

// NewFree returns the liar whose ranges claim MeaningFree: the guest does
// not care about those pages, so the engine skips them unchecked. Its
// default lie is "inuse": the pages that hold data, called free.
func NewFree(log hclog.Logger) *Provider {
	return &Provider{log: log, name: NameFree, meaning: hint.MeaningFree, deflt: LieInUse}
}

// Info implements hint.Provider.Info.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: p.name, Version: "1", Meaning: p.meaning}, nil
}

// Schema implements hint.Provider.Schema.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return hint.Schema{{Name: "lie", Type: schema.TypeString, Default: p.deflt,
		Doc: "what to report: outside, absurd, overlap, inuse, late or all"}}, nil
}

// Configure implements hint.Provider.Configure.
func (p *Provider) Configure(_ context.Context, cfg hint.Config, vm hint.VM, _ hint.Host) error {
	if err := p.Validate(context.Background(), cfg); err != nil {
		return err
	}
	lie, _ := cfg["lie"].(string)
	if lie == "" {
		lie = p.deflt
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vm, p.lie = &vm, lie
	return nil
}

// Validate implements hint.Validator: lie must be one of the lies.
func (p *Provider) Validate(_ context.Context, cfg hint.Config) error {
	if lie, _ := cfg["lie"].(string); lie != "" && !slices.Contains(lies, lie) {
		return schema.Problemf("lie", "want one of %v, not %q", lies, lie)
	}
	return nil
}

// Hints implements hint.Provider.Hints, untruthfully.
func (p *Provider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	vm, lie := p.vm, p.lie
	p.mu.Unlock()
	if vm == nil {
		return fmt.Errorf("%s: Hints before Configure", p.name)
	}
	zero, data, err := Scan(ctx, *vm)
	if err != nil {
		return err
	}
	var out []hint.Range
	has := func(l string) bool { return lie == l || lie == LieAll }
	if has(LieOutside) {
		out = append(out, Outside(vm.Pages())...)
	}
	if has(LieAbsurd) {
		out = append(out, Absurd()...)
	}
	if has(LieOverlap) {
		out = append(out, Overlap(zero)...)
	}
	if has(LieInUse) {
		out = append(out, data...)
	}
	if has(LieLate) {
		p.late.Add(1)
		go func() {
			defer p.late.Done()
			time.Sleep(LateDelay)
			err := emit(zero)
			p.log.Warn("answered late on purpose", "generation", req.Generation, "ranges", len(zero), "emit", fmt.Sprint(err))
		}()
	}
	p.log.Warn("lying on purpose", "lie", lie, "generation", req.Generation, "ranges", len(out))
	if len(out) == 0 {
		return nil
	}
	return emit(out)
}

// Close implements hint.Provider.Close; it waits for the late answers.
func (p *Provider) Close(context.Context, bool) error {
	p.late.Wait()
	return nil
}

// Outside is what lie "outside" reports for a guest of pages pages:
// ranges that start at or past the end of RAM, or run over it.
func Outside(pages uint64) []hint.Range {
	out := []hint.Range{{First: pages, Count: 1}, {First: pages + 1000, Count: 10}, {First: 1 << 40, Count: 1 << 20}}
	if pages > 0 {
		out = append(out, hint.Range{First: pages - 1, Count: 2})
	}
	return out
}

// Absurd is what lie "absurd" reports: empty ranges and ranges whose end
// does not fit in 64 bits.
func Absurd() []hint.Range {
	return []hint.Range{
		{First: 0, Count: 0}, {First: 1, Count: math.MaxUint64}, {First: math.MaxUint64, Count: 1},
		{First: math.MaxUint64 - 1, Count: 3}, {First: math.MaxUint64, Count: math.MaxUint64},
	}
}

// Overlap is what lie "overlap" reports for the zero ranges zero: each
// twice, and all but its first page once more.
func Overlap(zero []hint.Range) []hint.Range {
	var out []hint.Range
	for _, r := range zero {
		out = append(out, r, r)
		if r.Count > 1 {
			out = append(out, hint.Range{First: r.First + 1, Count: r.Count - 1})
		}
	}
	return out
}
