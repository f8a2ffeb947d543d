package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// HintArgs configures one hint provider of a migration (migrate-send).
type HintArgs struct {
	Name       string         `json:"name"`
	Plugin     string         `json:"plugin"` // absolute path of the provider binary
	Config     map[string]any `json:"config,omitempty"`
	DeadlineMS int64          `json:"deadline_ms,omitempty"`
}

// hintSet is the providers started for one migration.
type hintSet struct {
	sources []engine.HintSource
	failed  []engine.HintStats // providers that could not start: no hints from them
	stop    []func()
	files   []*os.File
}

// startHints launches and configures every provider. A provider that
// fails to start costs its hints, not the migration: it is reported.
func (v *VM) startHints(ctx context.Context, args []HintArgs) *hintSet {
	hs := &hintSet{}
	if len(args) == 0 {
		return hs
	}
	files, _, err := engine.RAMFiles(migrationVM{v: v}.RAM())
	if err != nil {
		for _, a := range args {
			hs.failed = append(hs.failed, engine.HintStats{Name: a.Name, Status: "failed: " + err.Error()})
		}
		return hs
	}
	hs.files = files
	vm := v.hintVM(files)
	for _, a := range args {
		src, stop, err := v.startHint(ctx, a, files, vm)
		if err != nil {
			status := "failed: " + err.Error()
			if errors.Is(err, hint.ErrNotSupported) {
				status = "not-supported: " + err.Error()
			}
			v.log.Warn("hint provider not used", "provider", a.Name, "err", err)
			hs.failed = append(hs.failed, engine.HintStats{Name: a.Name, Status: status})
			continue
		}
		hs.sources = append(hs.sources, src)
		hs.stop = append(hs.stop, stop)
	}
	return hs
}

func (v *VM) startHint(ctx context.Context, a HintArgs, files []*os.File, vm hint.VM) (engine.HintSource, func(), error) {
	if !filepath.IsAbs(a.Plugin) {
		return engine.HintSource{}, nil, fmt.Errorf("plugin must be an absolute path, got %q", a.Plugin)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, stop, err := launchHint(sctx, a.Plugin, files, v)
	if err != nil {
		return engine.HintSource{}, nil, err
	}
	fail := func(err error) (engine.HintSource, func(), error) { stop(); return engine.HintSource{}, nil, err }
	info, err := p.Info(sctx)
	if err != nil {
		return fail(err)
	}
	sch, err := p.Schema(sctx)
	if err != nil {
		return fail(err)
	}
	cfg, err := schema.Coerce(sch, a.Config)
	if err != nil {
		return fail(err)
	}
	if err := p.Configure(sctx, cfg, vm, hintHost{v}); err != nil {
		return fail(err)
	}
	return engine.HintSource{Name: a.Name, Provider: p, Meaning: info.Meaning,
		Deadline: time.Duration(a.DeadlineMS) * time.Millisecond}, stop, nil
}

// close stops the provider processes; the engine already closed their windows.
func (hs *hintSet) close() {
	for _, s := range hs.stop {
		s()
	}
	closeAll(hs.files)
}
