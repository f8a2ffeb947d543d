package session

import (
	"context"
	"errors"
	"os"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// hintSet is the providers started for one migration.
type hintSet struct {
	sources []engine.HintSource
	failed  []engine.HintStats // providers that could not start: no hints from them
	plugins []*hint.Plugin
}

// startHints launches and configures every provider, one after the
// other. A provider that fails to start costs its hints, not the
// migration: it is killed, logged and reported in failed.
func (s *Session) startHints(ctx context.Context, src framework.Source, host hint.Host) *hintSet {
	hs := &hintSet{}
	vm := s.hintVM(src)
	for _, h := range s.spec.Hints {
		p, hsrc, err := s.startHint(ctx, h, vm, host)
		if err != nil {
			status := "failed: " + err.Error()
			if errors.Is(err, hint.ErrNotSupported) {
				status = "not-supported: " + err.Error()
			}
			s.spec.Log.Warn("hint provider not used", "provider", h.Name, "err", err)
			hs.failed = append(hs.failed, engine.HintStats{Name: h.Name, Status: status})
			continue
		}
		hs.sources = append(hs.sources, hsrc)
		hs.plugins = append(hs.plugins, p)
	}
	return hs
}

// startHint starts one provider under HintStartTimeout: process, Info,
// Schema, its block, Configure. On error its process is gone.
func (s *Session) startHint(ctx context.Context, h Hint, vm hint.VM, host hint.Host) (*hint.Plugin, engine.HintSource, error) {
	if err := checkPath(h.Plugin.Path); err != nil {
		return nil, engine.HintSource{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, HintStartTimeout)
	defer cancel()
	p, err := hint.Launch(sctx, h.Plugin.Path, s.files, hclogFor(s.spec.Log, h.Plugin.Path))
	if err != nil {
		return nil, engine.HintSource{}, err
	}
	info, err := configure(sctx, p, h, vm, host)
	if err != nil {
		p.Kill()
		return nil, engine.HintSource{}, err
	}
	return p, engine.HintSource{Name: h.Name, Provider: p, Meaning: info.Meaning, Deadline: h.Deadline}, nil
}

// configure asks a started provider who it is and configures it.
func configure(ctx context.Context, p hint.Provider, h Hint, vm hint.VM, host hint.Host) (hint.Info, error) {
	info, err := p.Info(ctx)
	if err != nil {
		return hint.Info{}, err
	}
	sch, err := p.Schema(ctx)
	if err != nil {
		return hint.Info{}, err
	}
	cfg, err := schema.Coerce(sch, h.Plugin.Config)
	if err != nil {
		return hint.Info{}, err
	}
	return info, p.Configure(ctx, cfg, vm, host)
}

// close stops the provider processes; the engine already closed their
// windows (engine.Send closes them, final, whatever happened).
func (hs *hintSet) close() {
	for _, p := range hs.plugins {
		p.Kill()
	}
}

// hintVM describes the VM to providers: this process, RAM with the host
// addresses the VMM maps it at (src.Memory), and the RAM files.
func (s *Session) hintVM(src framework.Source) hint.VM {
	vm := hint.VM{ID: s.spec.Name, PID: os.Getpid(), Files: s.files}
	for i, r := range s.ram {
		vm.RAM = append(vm.RAM, hint.Region{GPA: r.GPA, Size: r.Size, HostAddr: hostAddr(src.Memory(i)),
			File: r.File, Offset: r.Offset})
	}
	return vm
}
