package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Send migrates src away: Open, then Session.Send. host offers the VMM's
// capabilities to hint providers; nil offers none (providers that need
// one report not-supported). The report is the engine's, with the
// providers that could not start added to Report.Hints; when the
// transport cannot start the report says failed (cancelled if ctx was)
// and nothing was sent.
func Send(ctx context.Context, src framework.Source, host hint.Host, spec Spec) (engine.Report, error) {
	s, err := Open(ctx, src.RAM(), spec)
	if err != nil {
		return failed(err), err
	}
	return s.Send(ctx, src, host)
}

// Receive migrates a VM into dst: Open, then Session.Receive.
func Receive(ctx context.Context, dst framework.Target, spec Spec) (engine.Report, error) {
	s, err := Open(ctx, dst.RAM(), spec)
	if err != nil {
		return failed(err), err
	}
	return s.Receive(ctx, dst)
}

// failed is the report of a session that ended before the engine ran:
// cancelled if ctx was, like the engine's.
func failed(err error) engine.Report {
	st := engine.StatusFailed
	if errors.Is(err, context.Canceled) {
		st = engine.StatusCancelled
	}
	return engine.Report{Status: st, Error: err.Error()}
}

// Session is one migration whose transport plugin runs and whose job
// block was accepted: Open starts it, Send or Receive runs it once and
// ends it, Close ends it without running. A VMM that must answer "did
// it start" before the migration runs (a control command) calls Open
// itself, then Send or Receive on another goroutine.
type Session struct {
	spec  Spec
	files []*os.File            // the guest RAM files every plugin gets
	ram   []transport.RAMRegion // the layout, naming files by index
	tr    transport.Transport
	once  sync.Once
	used  atomic.Bool // Send, Receive or Close was called
}

// Open starts the transport plugin with the files of ram
// (engine.RAMFiles) and checks spec.Transport.Config against the schema
// it reports. ctx bounds the start; cancelling it later kills nothing.
// On error nothing is left running or open.
func Open(ctx context.Context, ram framework.Layout, spec Spec) (*Session, error) {
	if err := Check(spec); err != nil {
		return nil, err
	}
	if spec.Log == nil {
		spec.Log = slog.Default()
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("ferry[%d]", os.Getpid())
	}
	files, regions, err := engine.RAMFiles(ram)
	if err != nil {
		return nil, err
	}
	s := &Session{spec: spec, files: files, ram: regions}
	if err := s.launchTransport(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// launchTransport starts the plugin and coerces its block.
func (s *Session) launchTransport(ctx context.Context) error {
	p := s.spec.Transport
	tr, err := transport.Launch(ctx, p.Path, s.files, hclogFor(s.spec.Log, p.Path))
	if err != nil {
		return fmt.Errorf("start transport plugin %s: %w", p.Path, err)
	}
	s.tr = tr
	sch, err := tr.Schema(ctx)
	if err == nil {
		s.spec.Engine.Transport, err = schema.Coerce(sch, p.Config)
	}
	if err != nil {
		return fmt.Errorf("transport plugin %s: %w", p.Path, err)
	}
	return nil
}

// errUsed: a Session runs one migration.
var errUsed = errors.New("session: Send or Receive already called, or Close")

// Send starts the hint providers, runs engine.Send and then ends the
// session (Close). src must be the VM whose RAM was given to Open.
func (s *Session) Send(ctx context.Context, src framework.Source, host hint.Host) (engine.Report, error) {
	if !s.used.CompareAndSwap(false, true) {
		return failed(errUsed), errUsed
	}
	defer s.Close()
	hs := s.startHints(ctx, src, host)
	defer hs.close()
	opt := s.options()
	opt.Hints = hs.sources
	rep, err := engine.Send(ctx, src, s.tr, opt)
	rep.Hints = append(rep.Hints, hs.failed...)
	return rep, err
}

// Receive runs engine.Receive into dst and then ends the session
// (Close). dst must be the VM whose RAM was given to Open.
func (s *Session) Receive(ctx context.Context, dst framework.Target) (engine.Report, error) {
	if !s.used.CompareAndSwap(false, true) {
		return failed(errUsed), errUsed
	}
	defer s.Close()
	return engine.Receive(ctx, dst, s.tr, s.options())
}

func (s *Session) options() engine.Options {
	opt := s.spec.Engine
	opt.Log = s.spec.Log
	opt.Progress = s.spec.Progress
	return opt
}

// Close stops the transport plugin (waiting for its process) and closes
// the RAM files. It is idempotent; Send and Receive call it. Call it for
// a Session that will not run, not to stop one that runs: cancel the
// context given to Send or Receive for that.
func (s *Session) Close() {
	s.once.Do(func() {
		s.used.Store(true)
		if s.tr != nil {
			s.tr.Close()
		}
		closeAll(s.files)
	})
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
