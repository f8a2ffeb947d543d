package hang

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Name is the provider's name: the label of its job block, and the
// binary ferry-hint-example-hang.
const Name = "example-hang"

// Modes.
const (
	ModeCtx    = "ctx"    // Hints returns when its context ends
	ModeIgnore = "ignore" // Hints never returns
	// ModeConfigure: Configure returns only when its context ends (then
	// Hints as in ModeCtx): a provider that hangs while it starts.
	ModeConfigure = "configure"
)

// Provider implements hint.Provider.
type Provider struct {
	log     hclog.Logger
	release chan struct{}
	once    sync.Once

	mu   sync.Mutex
	mode string // "": not configured
}

// New returns an unconfigured provider that logs to log.
func New(log hclog.Logger) *Provider { return &Provider{log: log, release: make(chan struct{})} }

// Info implements hint.Provider.Info.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: Name, Version: "1", Meaning: hint.MeaningFree}, nil
}

// Schema implements hint.Provider.Schema.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return hint.Schema{{Name: "mode", Type: schema.TypeString, Default: ModeCtx,
		Doc: `"ctx": Hints returns when its context ends; "ignore": Hints never returns; "configure": Configure returns when its context ends`}}, nil
}

// Configure implements hint.Provider.Configure.
func (p *Provider) Configure(ctx context.Context, cfg hint.Config, _ hint.VM, _ hint.Host) error {
	if err := p.Validate(ctx, cfg); err != nil {
		return err
	}
	mode, _ := cfg["mode"].(string)
	if mode == "" {
		mode = ModeCtx
	}
	p.mu.Lock()
	p.mode = mode
	p.mu.Unlock()
	if mode == ModeConfigure {
		p.log.Warn("hanging in Configure on purpose, until its context ends")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.release:
		}
	}
	return nil
}

// Validate implements hint.Validator: mode must be one of the modes. It
// answers at once in every mode.
func (p *Provider) Validate(_ context.Context, cfg hint.Config) error {
	switch mode, _ := cfg["mode"].(string); mode {
	case "", ModeCtx, ModeIgnore, ModeConfigure:
		return nil
	default:
		return schema.Problemf("mode", "want %q, %q or %q, not %q", ModeCtx, ModeIgnore, ModeConfigure, mode)
	}
}

// Hints implements hint.Provider.Hints, never with a hint.
func (p *Provider) Hints(ctx context.Context, req hint.Request, _ func([]hint.Range) error) error {
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	if mode == ModeIgnore {
		p.log.Warn("hanging on purpose, ignoring the deadline", "generation", req.Generation)
		<-p.release
		return nil
	}
	p.log.Debug("waiting for the deadline on purpose", "generation", req.Generation)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.release:
		return nil
	}
}

// Close implements hint.Provider.Close; it does not end a hanging Hints.
func (p *Provider) Close(context.Context, bool) error { return nil }

// Release ends every Hints call, running or to come, at once: for tests
// that check that nothing was left running. The plugin binary never
// calls it.
func (p *Provider) Release() { p.once.Do(func() { close(p.release) }) }
