package cmma

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// Name and Version describe this provider (hint.Info).
const (
	Name    = "cmma"
	Version = "0.1.0"
)

// FramesPerCall is how many CMMA values one Host.CMMABits call asks for:
// 256 KiB of values, 1 GiB of guest (KVM caps a call at 1 Mi frames).
const FramesPerCall = 1 << 18

// NotSupported is what the provider says, once, when the VMM has no CMMA.
const NotSupported = "CMMA is s390-only: not supported on this architecture"

var errNotConfigured = errors.New("cmma: no hint window is open; Configure first")

// Provider reports the guest frames that s390 CMMA marks unused
// (hint.MeaningUnused), read through Host.CMMABits.
type Provider struct {
	log hclog.Logger

	mu          sync.Mutex // guards the fields below
	w           *window
	unsupported error // why the host has no CMMA; no more calls to it
	said        bool  // the provider said so in its log
}

// window is one Configure..Close.
type window struct {
	ctx    context.Context // cancelled by Close: stops a running Hints
	cancel context.CancelFunc
	layout Layout
	host   hint.Host
}

var _ hint.Provider = (*Provider)(nil)

// New returns a Provider that logs to log (nil: nowhere).
func New(log hclog.Logger) *Provider {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Provider{log: log.Named(Name)}
}

// Info implements hint.Provider.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: Name, Version: Version, Meaning: hint.MeaningUnused}, nil
}

// Schema implements hint.Provider: no attributes beyond the engine's
// deadline.
func (p *Provider) Schema(context.Context) (hint.Schema, error) { return hint.Schema{}, nil }

// Configure implements hint.Provider. It does not call the host: whether
// the VMM has CMMA shows at the first Hints, so a VMM without it (every
// x86 VMM) configures fine and migrates without these hints.
func (p *Provider) Configure(_ context.Context, cfg hint.Config, vm hint.VM, host hint.Host) error {
	for k := range cfg {
		if k != "deadline" { // the engine's; tolerated if passed on
			return fmt.Errorf("%w: cmma: unknown attribute %q (the cmma provider has none)", hint.ErrBadConfig, k)
		}
	}
	l, err := NewLayout(vm.RAM)
	if err != nil {
		return fmt.Errorf("%w: cmma: %v", hint.ErrBadConfig, err)
	}
	w := &window{layout: l, host: host}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	old := p.w
	p.w, p.unsupported = w, nil // another host may have CMMA
	p.mu.Unlock()
	if old != nil {
		old.cancel()
	}
	return nil
}

// Hints implements hint.Provider: it reads the CMMA values of every RAM
// region, FramesPerCall at a time, and emits the unused frames as page
// ranges. Without CMMA in the VMM it emits nothing and returns an error
// wrapping hint.ErrNotSupported (the engine then stops asking), having
// said NotSupported once in the log.
func (p *Provider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	w, unsupported := p.w, p.unsupported
	p.mu.Unlock()
	switch {
	case w == nil:
		return errNotConfigured
	case unsupported != nil:
		return p.notSupported(unsupported)
	case w.host == nil:
		return p.notSupported(errors.New("the VMM offers no host capabilities"))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.ctx, cancel)()
	b := hint.NewBatcher(emit)
	var rs []hint.Range
	for _, s := range w.layout {
		for gfn, end := s.gfn, s.gfn+s.frames; gfn < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			first, values, err := w.host.CMMABits(ctx, gfn, int(min(end-gfn, FramesPerCall)))
			if errors.Is(err, hint.ErrNotSupported) {
				return p.notSupported(err)
			}
			if err != nil {
				return fmt.Errorf("cmma: CMMA values from frame %#x: %w", gfn, err)
			}
			// No values (no more dirty ones in migration mode, or the
			// guest never used CMMA), or values from before gfn (the
			// migration-mode walk wrapped around): this region is done.
			if len(values) == 0 || first < gfn || first >= end {
				break
			}
			values = values[:min(uint64(len(values)), end-first)]
			rs = w.layout.Decode(rs[:0], first, values)
			for _, r := range rs {
				if err := b.Add(r); err != nil {
					return err
				}
			}
			gfn = first + uint64(len(values))
		}
	}
	if err := b.Flush(); err != nil {
		return err
	}
	p.log.Debug("hints", "generation", req.Generation, "unused_pages", b.Pages())
	return nil
}

// notSupported remembers that the host has no CMMA, says so once, and
// returns the error Hints ends with.
func (p *Provider) notSupported(cause error) error {
	p.mu.Lock()
	p.unsupported = cause
	say := !p.said
	p.said = true
	p.mu.Unlock()
	if say {
		p.log.Info(NotSupported+"; no hints from this provider", "reason", cause)
	}
	if errors.Is(cause, hint.ErrNotSupported) {
		return fmt.Errorf("cmma: %s: %w", NotSupported, cause)
	}
	return fmt.Errorf("cmma: %s: %v: %w", NotSupported, cause, hint.ErrNotSupported)
}

// Close implements hint.Provider: it stops a running Hints. The CMMA
// state belongs to the VMM; nothing goes back to the guest.
func (p *Provider) Close(context.Context, bool) error {
	p.mu.Lock()
	w := p.w
	p.w = nil
	p.mu.Unlock()
	if w != nil {
		w.cancel()
	}
	return nil
}
