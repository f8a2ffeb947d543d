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
// migration: it is killed, logged and reported in failed, with what
// happened where (startFailure).
func (s *Session) startHints(ctx context.Context, src framework.Source, host hint.Host) *hintSet {
	hs := &hintSet{}
	vm := s.hintVM(src)
	for _, h := range s.spec.Hints {
		p, hsrc, stage, err := s.startHint(ctx, h, vm, host)
		if err != nil {
			s.spec.Log.Warn("hint provider not used", "provider", h.Name, "stage", stage, "err", err)
			st := startFailure(h, stage, err)
			if hsrc.Meaning != 0 {
				st.Meaning = hsrc.Meaning.String()
			}
			hs.failed = append(hs.failed, st)
			continue
		}
		hs.sources = append(hs.sources, hsrc)
		hs.plugins = append(hs.plugins, p)
	}
	return hs
}

// startFailure reports a provider that did not start, the way the engine
// reports one that fails later (engine.HintStats): crashed with its exit
// status and last error line, hung when its start or Configure ran past
// its bound, not-supported, or failed.
func startFailure(h Hint, stage string, err error) engine.HintStats {
	st := engine.HintStats{Name: h.Name, Stage: stage, Status: "failed: " + err.Error()}
	var ee *hint.ExitError
	switch {
	case errors.As(err, &ee):
		st.Status, st.ExitStatus, st.LastError = engine.HintCrashed, ee.Status, ee.LastError
	case errors.Is(err, hint.ErrPluginGone):
		st.Status = engine.HintCrashed
	case errors.Is(err, context.DeadlineExceeded):
		st.Status, st.DeadlineMS = engine.HintHung, h.startTimeout().Milliseconds()
	case errors.Is(err, hint.ErrNotSupported):
		st.Status = engine.HintNotSupported + ": " + err.Error()
	}
	return st
}

// startHint starts one provider under its start timeout: process, Info,
// Schema, its block (stage "start"), Configure ("configure"). On error
// its process is gone.
func (s *Session) startHint(ctx context.Context, h Hint, vm hint.VM, host hint.Host) (*hint.Plugin, engine.HintSource, string, error) {
	if err := checkPath(h.Plugin.Path); err != nil {
		return nil, engine.HintSource{}, engine.StageStart, err
	}
	sctx, cancel := context.WithTimeout(ctx, h.startTimeout())
	defer cancel()
	p, err := hint.Launch(sctx, h.Plugin.Path, s.files, hclogFor(s.spec.Log, h.Plugin.Path))
	if err != nil {
		return nil, engine.HintSource{}, engine.StageStart, err
	}
	info, stage, err := configure(sctx, p, h, vm, host)
	if err != nil {
		p.Kill()
		return nil, engine.HintSource{Meaning: info.Meaning}, stage, err
	}
	return p, engine.HintSource{Name: h.Name, Provider: p, Meaning: info.Meaning, Deadline: h.Deadline}, "", nil
}

// configure asks a started provider who it is, has it check its block
// (hint.Validate) and configures it; stage says which step failed.
func configure(ctx context.Context, p hint.Provider, h Hint, vm hint.VM, host hint.Host) (hint.Info, string, error) {
	info, err := p.Info(ctx)
	if err != nil {
		return hint.Info{}, engine.StageStart, err
	}
	sch, err := p.Schema(ctx)
	if err != nil {
		return hint.Info{}, engine.StageStart, err
	}
	cfg, err := schema.Coerce(sch, h.Plugin.Config)
	if err == nil {
		err = hint.Validate(ctx, p, cfg) // the provider's own checks, if it has any
	}
	if err != nil {
		return info, engine.StageStart, err
	}
	return info, engine.StageConfigure, p.Configure(ctx, cfg, vm, host)
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
