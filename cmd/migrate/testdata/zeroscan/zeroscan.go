// Package zeroscan is a hint provider written outside Ferry's
// repository, in its own Go module, as a third party writes one
// (docs/PLUGINS.md, "Writing a provider in your own module"). It reports
// as zero the pages of a guest physical range that the host holds but
// that read as zero. (Pages the host never populated need no hint: the
// engine finds those holes itself.)
//
//	hint "zeroscan" {
//	  deadline = "300ms"      # the engine's
//	  min_gpa  = "0x100000"   # first address scanned (default 0)
//	  max_gpa  = "16M"        # end of the scan, exclusive (default 0: the end of RAM)
//	}
package zeroscan

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Name is the provider's name: its job block's label, and the binary
// ferry-hint-zeroscan.
const Name = "zeroscan"

// Provider implements hint.Provider.
type Provider struct {
	log hclog.Logger

	mu     sync.Mutex
	vm     hint.VM
	lo, hi uint64 // the scanned range of guest physical addresses
	open   bool   // a hint window is open
}

// New returns an unconfigured provider that logs to log.
func New(log hclog.Logger) *Provider { return &Provider{log: log} }

// Info implements hint.Provider.Info.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: Name, Version: "1", Meaning: hint.MeaningZero}, nil
}

// Schema implements hint.Provider.Schema.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return hint.Schema{
		{Name: "min_gpa", Type: schema.TypeAddress, Default: int64(0), Doc: "first guest physical address scanned"},
		{Name: "max_gpa", Type: schema.TypeAddress, Default: int64(0), Doc: "end of the scan, exclusive; 0: the end of RAM"},
	}, nil
}

// Configure implements hint.Provider.Configure.
func (p *Provider) Configure(_ context.Context, cfg hint.Config, vm hint.VM, _ hint.Host) error {
	lo, _ := cfg["min_gpa"].(int64)
	hi, _ := cfg["max_gpa"].(int64)
	if hi == 0 {
		hi = 1<<63 - 1
	}
	if hi <= lo {
		return fmt.Errorf("%w: max_gpa %#x must be above min_gpa %#x", hint.ErrBadConfig, hi, lo)
	}
	p.log.Info("configured", "vm", vm.ID, "min_gpa", fmt.Sprintf("%#x", lo), "max_gpa", fmt.Sprintf("%#x", hi))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vm, p.lo, p.hi, p.open = vm, uint64(lo), uint64(hi), true
	return nil
}

// Hints implements hint.Provider.Hints: it scans the populated pages of
// the range (hint.RAMView.Scan: pread, never a mapping, so the scan
// allocates no host memory) until it is done or it is time to answer.
func (p *Provider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	vm, lo, hi, open := p.vm, p.lo, p.hi, p.open
	p.mu.Unlock()
	if !open {
		return errors.New("zeroscan: Hints outside a hint window (Configure first)")
	}
	work, cancel := req.Context(ctx, 0) // ends a margin before req.Deadline
	defer cancel()
	start, found := time.Now(), 0
	for _, r := range vm.Regions() {
		if r.GPA >= hi || r.GPA+r.Size <= lo {
			continue
		}
		err := r.Scan(work, func(first uint64, data []byte) error {
			var out []hint.Range
			for i := 0; i < len(data); i += hint.PageSize {
				page := first + uint64(i/hint.PageSize)
				gpa, _ := r.PageGPA(page)
				if gpa >= lo && gpa < hi && zero(data[i:i+hint.PageSize]) {
					out = appendPage(out, page)
				}
			}
			found += len(out)
			if len(out) == 0 {
				return nil
			}
			return emit(out)
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err() // the engine stopped listening
		case err != nil && work.Err() != nil:
			p.log.Debug("answering before the deadline", "generation", req.Generation, "took", time.Since(start))
			return nil // what was sent counts
		case err != nil:
			return err
		}
	}
	p.log.Debug("scanned", "generation", req.Generation, "runs", found, "took", time.Since(start))
	return nil
}

// Close implements hint.Provider.Close.
func (p *Provider) Close(_ context.Context, final bool) error {
	if final {
		p.mu.Lock()
		p.vm, p.open = hint.VM{}, false
		p.mu.Unlock()
	}
	return nil
}

// zero reports whether b is all zero bytes.
func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// appendPage adds page to out, extending the last range when it is next.
func appendPage(out []hint.Range, page uint64) []hint.Range {
	if n := len(out); n > 0 && out[n-1].First+out[n-1].Count == page {
		out[n-1].Count++
		return out
	}
	return append(out, hint.Range{First: page, Count: 1})
}
