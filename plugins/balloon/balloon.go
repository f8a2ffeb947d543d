// Package balloon is the virtio-balloon hint provider: in every pass it
// runs one free page hint session in the VMM's balloon device (through
// hint.Host: start, collect until the guest's STOP or the deadline, stop)
// and reports the hinted blocks as free pages. When the hint window closes
// it sends DONE so the guest takes its blocks back — on the source at the
// end of the migration, on cancel and on every error path (the engine
// closes the window whatever happened); the destination's VMM sends DONE
// after restoring the device.
//
// What it cannot do: know whether the guest keeps its promise not to touch
// hinted pages. It does not need to: the engine applies hints only to the
// pass whose dirty sync preceded the request, so a page written after the
// request travels anyway.
//
// It is a plain Go package; cmd/ferry-hint-balloon serves it as a plugin.
package balloon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/hint"
)

// Provider implements hint.Provider.
type Provider struct {
	mu          sync.Mutex
	host        hint.Host
	ram         []hint.Region
	unsupported bool
}

// New returns an unconfigured provider.
func New() *Provider { return &Provider{} }

// Info implements hint.Provider.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: "balloon", Version: "1", Meaning: hint.MeaningFree}, nil
}

// Schema implements hint.Provider: no attributes beyond the engine's deadline.
func (p *Provider) Schema(context.Context) (hint.Schema, error) { return hint.Schema{}, nil }

// Configure implements hint.Provider.
func (p *Provider) Configure(_ context.Context, _ hint.Config, vm hint.VM, host hint.Host) error {
	if host == nil {
		return fmt.Errorf("%w: no host capabilities", hint.ErrNotSupported)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host, p.ram, p.unsupported = host, vm.RAM, false
	return nil
}

// Hints implements hint.Provider: one balloon hint session, bounded by ctx.
func (p *Provider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	host, ram, unsupported := p.host, p.ram, p.unsupported
	p.mu.Unlock()
	if host == nil {
		return errors.New("balloon hints asked before Configure")
	}
	if unsupported {
		return hint.ErrNotSupported
	}
	gpas, err := host.BalloonHint(ctx)
	if errors.Is(err, hint.ErrNotSupported) {
		p.mu.Lock()
		p.unsupported = true
		p.mu.Unlock()
		return fmt.Errorf("the VM has no virtio-balloon with free page hinting: %w", err)
	}
	ranges := hint.VM{RAM: ram}.PageRanges(gpas)
	for len(ranges) > 0 {
		n := min(len(ranges), 4096)
		if eerr := emit(ranges[:n]); eerr != nil {
			return eerr
		}
		ranges = ranges[n:]
	}
	return err
}

// Close implements hint.Provider: DONE, so the guest gets its pages back.
func (p *Provider) Close(ctx context.Context, final bool) error {
	p.mu.Lock()
	host, unsupported := p.host, p.unsupported
	p.mu.Unlock()
	if host == nil || unsupported {
		return nil
	}
	err := host.BalloonDone(ctx)
	if errors.Is(err, hint.ErrNotSupported) {
		return nil
	}
	return err
}
