package crash

import (
	"context"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// Name is the provider's name: the label of its job block, and the
// binary ferry-hint-example-crash.
const Name = "example-crash"

// When the process exits.
const (
	WhenConfigure = "configure"
	WhenHints     = "hints" // the default
	// WhenBalloon: in Hints, after one balloon free page hint session in
	// the VMM (Host.BalloonHint), so the guest holds hinted blocks that
	// this provider never gives back.
	WhenBalloon = "balloon"
)

// ExitCode is the status the process exits with.
const ExitCode = 3

// Provider implements hint.Provider.
type Provider struct {
	log  hclog.Logger
	exit func(code int) // os.Exit; tests replace it

	mu   sync.Mutex
	when string
	host hint.Host
}

// New returns an unconfigured provider that logs to log.
func New(log hclog.Logger) *Provider { return &Provider{log: log, exit: os.Exit} }

// Info implements hint.Provider.Info.
func (p *Provider) Info(context.Context) (hint.Info, error) {
	return hint.Info{Name: Name, Version: "1", Meaning: hint.MeaningFree}, nil
}

// Schema implements hint.Provider.Schema.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return hint.Schema{{Name: "when", Type: schema.TypeString, Default: WhenHints,
		Doc: `when the process exits: "configure", "hints" or "balloon" (in Hints, after a balloon hint session)`}}, nil
}

// Configure implements hint.Provider.Configure: the process exits here
// when "when" is "configure".
func (p *Provider) Configure(_ context.Context, cfg hint.Config, _ hint.VM, host hint.Host) error {
	if err := p.Validate(context.Background(), cfg); err != nil {
		return err
	}
	when, _ := cfg["when"].(string)
	if when == "" {
		when = WhenHints
	}
	p.mu.Lock()
	p.when, p.host = when, host
	p.mu.Unlock()
	if when == WhenConfigure {
		p.die("Configure")
	}
	return nil
}

// Validate implements hint.Validator: when must be "configure", "hints"
// or "balloon". It never exits the process.
func (p *Provider) Validate(_ context.Context, cfg hint.Config) error {
	switch when, _ := cfg["when"].(string); when {
	case "", WhenConfigure, WhenHints, WhenBalloon:
		return nil
	default:
		return schema.Problemf("when", "want %q, %q or %q, not %q", WhenConfigure, WhenHints, WhenBalloon, when)
	}
}

// Hints implements hint.Provider.Hints: the process exits here, after a
// balloon hint session when "when" is "balloon".
func (p *Provider) Hints(ctx context.Context, _ hint.Request, _ func([]hint.Range) error) error {
	p.mu.Lock()
	when, host := p.when, p.host
	p.mu.Unlock()
	if when == WhenBalloon && host != nil {
		gpas, err := host.BalloonHint(ctx)
		p.log.Info("balloon hint session", "ranges", len(gpas), "err", err)
	}
	p.die("Hints")
	return nil
}

// Close implements hint.Provider.Close.
func (p *Provider) Close(context.Context, bool) error { return nil }

func (p *Provider) die(in string) {
	p.log.Error("exiting on purpose", "in", in, "status", ExitCode)
	p.exit(ExitCode)
}
