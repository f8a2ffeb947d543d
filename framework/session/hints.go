package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
)

// hintSet is the providers of one migration, all starting at once from
// Open on, each on its own goroutine, beside the transport's start:
//
//	Open ──► start ─┬─ provider 1: Launch, Info, Schema, Coerce ─┐ wait for ─► Configure ─► ready
//	                ├─ provider 2: ...                           ├ Send's VM     (each under
//	                └─ transport (Open's goroutine)              ┘               HintStartTimeout)
//
// Send hands them the VM (configure) and waits for all of them; Receive
// and Close stop them (stop). A provider that fails costs its hints.
type hintSet struct {
	log    *slog.Logger
	starts []*hintStart
	ctx    context.Context // ends every start: Close, Receive, or Send's ctx
	cancel context.CancelFunc
	wg     sync.WaitGroup // the start goroutines

	vm    hint.VM   // for Configure; set before goVM is closed
	host  hint.Host // likewise
	goVM  chan struct{}
	once  sync.Once // closes goVM
	kills sync.Once
}

// hintStart is one provider's start; its fields are the goroutine's
// until hintSet.wg is done.
type hintStart struct {
	h     Hint
	p     *hint.Plugin // nil if it failed
	info  hint.Info
	cfg   schema.Config
	stage string // where err happened: engine.StageStart or StageConfigure
	err   error
}

// startHints starts every provider in the background. ctx's values are
// kept, its end is not: the starts outlive Open (hintSet.ctx ends them).
func (s *Session) startHints(ctx context.Context) *hintSet {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	hs := &hintSet{log: s.spec.Log, ctx: hctx, cancel: cancel, goVM: make(chan struct{})}
	for _, h := range s.spec.Hints {
		st := &hintStart{h: h}
		hs.starts = append(hs.starts, st)
		hs.wg.Go(func() { hs.run(st, s.files) })
	}
	return hs
}

// run starts one provider and, once Send gave the VM, configures it. On
// error its process is gone.
func (hs *hintSet) run(st *hintStart, files []*os.File) {
	st.stage, st.err = engine.StageStart, hs.launch(st, files)
	if st.err == nil {
		st.stage = engine.StageConfigure
		select {
		case <-hs.goVM:
			st.err = hs.configure(st)
		case <-hs.ctx.Done():
			st.err = hs.ctx.Err()
		}
	}
	if st.err != nil && st.p != nil {
		st.p.Kill()
		st.p = nil
	}
}

// launch starts the process, asks who it is (an Info that does not
// validate is refused: without a valid meaning the engine could not tell
// how far to trust its ranges; so is one whose name is not the Hint's,
// which the report would show under a name it does not answer to) and
// checks its block (the schema, then the provider's own checks:
// hint.Validate), under its start timeout.
func (hs *hintSet) launch(st *hintStart, files []*os.File) error {
	if err := checkPath(st.h.Plugin.Path); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(hs.ctx, st.h.startTimeout())
	defer cancel()
	p, err := hint.Launch(ctx, st.h.Plugin.Path, files, hclogFor(hs.log, st.h.Plugin.Path))
	if err != nil {
		return err
	}
	st.p = p
	if st.info, err = p.Info(ctx); err != nil {
		return err
	}
	if err := st.info.Validate(); err != nil { // malformed: its ranges could not be weighed
		return err
	}
	if err := st.info.CheckName(st.h.Name); err != nil {
		return fmt.Errorf("hint provider %s: %w", st.h.Plugin.Path, err)
	}
	sch, err := p.Schema(ctx)
	if err != nil {
		return err
	}
	if st.cfg, err = schema.Coerce(sch, st.h.Plugin.Config); err != nil {
		return err
	}
	return hint.Validate(ctx, p, st.cfg)
}

// configure configures a started provider, under its start timeout.
func (hs *hintSet) configure(st *hintStart) error {
	ctx, cancel := context.WithTimeout(hs.ctx, st.h.startTimeout())
	defer cancel()
	return st.p.Configure(ctx, st.cfg, hs.vm, hs.host)
}

// ready gives the providers vm and host, waits until each is configured
// or has failed (ctx ending stops the starts), and returns the sources
// for the engine and the failed providers' stats, in the job's order.
func (hs *hintSet) ready(ctx context.Context, vm hint.VM, host hint.Host) ([]engine.HintSource, []engine.HintStats) {
	hs.vm, hs.host = vm, host
	hs.once.Do(func() { close(hs.goVM) })
	stop := context.AfterFunc(ctx, hs.cancel)
	hs.wg.Wait()
	stop()
	var sources []engine.HintSource
	var failed []engine.HintStats
	for _, st := range hs.starts {
		if st.err == nil {
			sources = append(sources, engine.HintSource{Name: st.h.Name, Provider: st.p, Meaning: st.info.Meaning, Deadline: st.h.Deadline})
			continue
		}
		hs.log.Warn("hint provider not used", "provider", st.h.Name, "stage", st.stage, "err", st.err)
		fs := startFailure(st.h, st.stage, st.err)
		if st.info.Meaning != 0 {
			fs.Meaning = st.info.Meaning.String()
		}
		failed = append(failed, fs)
	}
	return sources, failed
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

// stop ends the starts still running and kills every provider process,
// all at once, and waits for them; the engine already closed their
// windows (engine.Send closes them, final, whatever happened). Safe on
// nil and more than once.
func (hs *hintSet) stop() {
	if hs == nil {
		return
	}
	hs.kills.Do(func() {
		hs.cancel()
		hs.wg.Wait()
		var wg sync.WaitGroup
		for _, st := range hs.starts {
			if st.p != nil {
				wg.Go(st.p.Kill)
			}
		}
		wg.Wait()
	})
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

// sinceMS is the milliseconds since t.
func sinceMS(t time.Time) int64 { return time.Since(t).Milliseconds() }
