package static

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Name is the provider's name: the label of its job block, and the
// binary ferry-hint-example-static.
const Name = "example-static"

// batch bounds one emit call.
const batch = 4096

// Provider implements hint.Provider.
type Provider struct {
	log hclog.Logger

	mu     sync.Mutex
	ranges []hint.Range // the current window's pages; nil: no window
	open   bool         // a window is open (Configure, until Close(final))
}

// New returns an unconfigured provider that logs to log.
func New(log hclog.Logger) *Provider { return &Provider{log: log} }

// Info implements hint.Provider.Info.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: Name, Version: "1", Meaning: hint.MeaningFree}, nil
}

// Schema implements hint.Provider.Schema.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return hint.Schema{{
		Name:    "ranges",
		Type:    schema.TypeString,
		Default: "",
		Doc:     `guest physical ranges to report free: "START-END,..." (hex or decimal, END exclusive; partial pages are left out)`,
	}}, nil
}

// Configure implements hint.Provider.Configure: it parses the ranges and
// converts them to pages of this VM's RAM once, for every generation.
func (p *Provider) Configure(_ context.Context, cfg hint.Config, vm hint.VM, _ hint.Host) error {
	s, _ := cfg["ranges"].(string)
	gpas, err := Parse(s)
	if err != nil {
		return fmt.Errorf("%w: ranges: %v", hint.ErrBadConfig, err)
	}
	ranges := vm.PageRanges(gpas)
	var pages uint64
	for _, r := range ranges {
		pages += r.Count
	}
	p.log.Info("configured", "vm", vm.ID, "gpa_ranges", len(gpas), "pages", pages)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ranges, p.open = ranges, true
	return nil
}

// Hints implements hint.Provider.Hints: the same pages every generation,
// in batches, stopping when ctx ends or emit fails.
func (p *Provider) Hints(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	ranges, open := p.ranges, p.open
	p.mu.Unlock()
	if !open {
		return errors.New("example-static: Hints outside a hint window (Configure first)")
	}
	for len(ranges) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(ranges), batch)
		if err := emit(ranges[:n]); err != nil {
			return err
		}
		ranges = ranges[n:]
	}
	return nil
}

// Close implements hint.Provider.Close. There is nothing to give back;
// the final Close ends the window, and any number of Closes is fine.
func (p *Provider) Close(_ context.Context, final bool) error {
	if final {
		p.mu.Lock()
		p.ranges, p.open = nil, false
		p.mu.Unlock()
	}
	return nil
}

// Parse reads "START-END,START-END,..." (hexadecimal with 0x, or decimal;
// END exclusive; spaces allowed around items). The empty string is no
// ranges.
func Parse(s string) ([]hint.GPARange, error) {
	var out []hint.GPARange
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, ok := strings.Cut(item, "-")
		if !ok {
			return nil, fmt.Errorf("%q is not START-END", item)
		}
		start, err1 := strconv.ParseUint(strings.TrimSpace(lo), 0, 64)
		end, err2 := strconv.ParseUint(strings.TrimSpace(hi), 0, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%q: %v", item, err)
		}
		if end <= start {
			return nil, fmt.Errorf("%q: END must be above START", item)
		}
		out = append(out, hint.GPARange{GPA: start, Size: end - start})
	}
	return out, nil
}
