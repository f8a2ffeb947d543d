package pagemap

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// Name and Version describe this provider (hint.Info).
const (
	Name    = "pagemap"
	Version = "0.1.0"
)

var errNotConfigured = errors.New("pagemap: no hint window is open; Configure first")

// Provider reports guest RAM that the host never populated (or that was
// punched out of the RAM file since) as zero. It serves one hint window
// at a time; Configure may open the next one after Close.
type Provider struct {
	log hclog.Logger
	mu  sync.Mutex // guards s
	s   *session
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
	return hint.Info{Name: Name, Version: Version, Meaning: hint.MeaningZero}, nil
}

// Schema implements hint.Provider.
func (p *Provider) Schema(context.Context) (hint.Schema, error) {
	return append(hint.Schema(nil), configSchema...), nil
}

// Configure implements hint.Provider: it checks the block, opens its own
// descriptions of the RAM files and decides per region how to classify
// (see the package documentation). host is not used.
func (p *Provider) Configure(ctx context.Context, cfg hint.Config, vm hint.VM, _ hint.Host) error {
	c, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	s, err := openSession(ctx, c, vm, p.log)
	if err != nil {
		return err
	}
	p.mu.Lock()
	old := p.s
	p.s = s
	p.mu.Unlock()
	if old != nil {
		old.close(ctx)
	}
	return nil
}

// Hints implements hint.Provider: it classifies every region afresh and
// emits the zero pages, coalesced, in increasing page order, at most
// hint.BatchRanges (2048) ranges per emit (hint.Batcher).
func (p *Provider) Hints(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
	p.mu.Lock()
	s := p.s
	if s != nil {
		s.running.Add(1)
	}
	p.mu.Unlock()
	if s == nil {
		return errNotConfigured
	}
	defer s.running.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	b := hint.NewBatcher(emit)
	for i := range s.regions {
		if err := s.classify(ctx, &s.regions[i], b.Add); err != nil {
			return err
		}
	}
	if err := b.Flush(); err != nil {
		return err
	}
	p.log.Debug("hints", "generation", req.Generation, "zero_pages", b.Pages())
	return nil
}

// Close implements hint.Provider: it stops a running Hints and releases
// the files. There is nothing to give back to the guest.
func (p *Provider) Close(ctx context.Context, _ bool) error {
	p.mu.Lock()
	s := p.s
	p.s = nil
	p.mu.Unlock()
	if s != nil {
		s.close(ctx)
	}
	return nil
}
