package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/control"
)

// MigrateArgs is the argument of migrate-send and migrate-incoming.
type MigrateArgs struct {
	// Plugin is the absolute path of the transport plugin binary.
	Plugin string `json:"plugin"`
	// Transport is the job's transport block; it is checked against the
	// schema the plugin reports.
	Transport     map[string]any `json:"transport"`
	MaxDowntimeMS int64          `json:"max_downtime_ms,omitempty"`
	Bandwidth     uint64         `json:"bandwidth,omitempty"` // bytes per second, 0 unlimited
	MaxPasses     int            `json:"max_passes,omitempty"`
	// VerifyPages turns on the engine's page-exact check (a test mode).
	VerifyPages bool `json:"verify_pages,omitempty"`
	// SwitchoverTimeoutMS bounds the switch-over (engine.Options.SwitchoverTimeout);
	// both sides need the same value. 0: the engine's default.
	SwitchoverTimeoutMS int64 `json:"switchover_timeout_ms,omitempty"`
	// IncomingTimeoutMS bounds how long migrate-incoming waits for the
	// source to connect; 0 waits until migrate-cancel.
	IncomingTimeoutMS int64 `json:"incoming_timeout_ms,omitempty"`
	// Hints are the hint providers (migrate-send only).
	Hints []HintArgs `json:"hints,omitempty"`
	// Credentials are this side's trust material for the session (its
	// key, the peer's roots); without them the transport refuses to open.
	Credentials *transport.Credentials `json:"credentials,omitempty"`
}

// serveMigration registers the migration commands:
//
//	migrate-send MigrateArgs     → starts sending this VM; poll migrate-status
//	migrate-incoming MigrateArgs → starts receiving into this (-incoming) VM
//	migrate-status               → Migration (progress, side, and the report when done)
//	migrate-cancel               → cancels a running migration (the source keeps running,
//	                               unless COMMIT was already written: then handover-unknown)
//	migrate-resolve ResolveArgs  → ResolveResult: query or resolve a handover-unknown (handover.go)
//
// From migrate-send or migrate-incoming accepted until the migration has
// finished, the migration owns the VM: pause, resume, quit, state-save and
// state-load are refused (runlock.go); status, migrate-status,
// migrate-cancel and migrate-resolve work. migrate-status reports done
// only together with the VM's final state (migrated, running,
// handover-unknown or stopped).
func (v *VM) serveMigration(s *control.Server) {
	mg := &migration{}
	v.serveResolve(s, mg)
	s.Handle("migrate-send", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return v.startMigration(ctx, mg, raw, transport.RoleSend)
	})
	s.Handle("migrate-incoming", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return v.startMigration(ctx, mg, raw, transport.RoleReceive)
	})
	s.Handle("migrate-status", func(context.Context, json.RawMessage) (any, error) {
		if st := mg.status(); st != nil {
			return st, nil
		}
		return nil, errors.New("no migration has run on this VM")
	})
	s.Handle("migrate-cancel", func(context.Context, json.RawMessage) (any, error) {
		return map[string]bool{"cancelled": mg.cancelRunning()}, nil
	})
}

// StateMigrated: the VM was handed to a migration destination; it stays
// paused here until quit.
const StateMigrated State = "migrated"

// startMigration checks the arguments, makes the migration the owner of
// the VM's run state (runlock.go; reqCtx bounds the wait for a pause or
// resume in progress), starts the transport plugin and runs the engine
// in the background until it finishes.
func (v *VM) startMigration(reqCtx context.Context, mg *migration, raw json.RawMessage, role transport.Role) (any, error) {
	a, err := parseMigrateArgs(raw)
	if err != nil {
		return nil, err
	}
	opt := engine.Options{MaxDowntime: time.Duration(a.MaxDowntimeMS) * time.Millisecond,
		Bandwidth: a.Bandwidth, MaxPasses: a.MaxPasses, VerifyPages: a.VerifyPages, Log: v.log,
		SwitchoverTimeout: time.Duration(a.SwitchoverTimeoutMS) * time.Millisecond,
		IncomingTimeout:   time.Duration(a.IncomingTimeoutMS) * time.Millisecond,
		Credentials:       a.credentials()}
	ctx, cancel := context.WithCancel(context.Background())
	own, err := v.claim(reqCtx, mg, role.String(), cancel, func(st State) error { return v.canMigrate(role, st) })
	if err != nil {
		cancel()
		return nil, err
	}
	opt.Progress = mg.progress
	tr, files, err := v.launchTransport(ctx, a, &opt)
	if err != nil {
		own.release(func() {
			mg.finish(engine.Report{Status: engine.StatusFailed, Error: err.Error()}, sideAfter(role, engine.Report{}))
		})
		cancel()
		return nil, err
	}
	go func() {
		defer cancel()
		m := migrationVM{v: v, own: own}
		var rep engine.Report
		var err error
		if role == transport.RoleSend {
			hs := v.startHints(ctx, a.Hints)
			opt.Hints = hs.sources
			rep, err = engine.Send(ctx, m, tr, opt)
			rep.Hints = append(rep.Hints, hs.failed...)
			hs.close()
		} else {
			rep, err = engine.Receive(ctx, m, tr, opt)
		}
		tr.Close()
		closeAll(files)
		v.endMigration(own, mg, role, rep, err)
	}()
	return mg.status(), nil
}

// maxDowntimeMS bounds max_downtime_ms (a day), so the duration cannot
// overflow.
const maxDowntimeMS = 24 * 3600 * 1000

// parseMigrateArgs decodes and checks the argument of migrate-send and
// migrate-incoming. Hint providers are checked when they start: one that
// cannot costs its hints, not the migration.
func parseMigrateArgs(raw json.RawMessage) (MigrateArgs, error) {
	var a MigrateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return MigrateArgs{}, err
	}
	switch {
	case !filepath.IsAbs(a.Plugin):
		return MigrateArgs{}, fmt.Errorf("plugin must be an absolute path, got %q", a.Plugin)
	case a.MaxDowntimeMS < 0 || a.MaxDowntimeMS > maxDowntimeMS:
		return MigrateArgs{}, fmt.Errorf("max_downtime_ms %d out of range: 0 (the default) to %d", a.MaxDowntimeMS, maxDowntimeMS)
	case a.MaxPasses < 0:
		return MigrateArgs{}, fmt.Errorf("max_passes %d must not be negative (0 is the default)", a.MaxPasses)
	case a.SwitchoverTimeoutMS < 0 || a.SwitchoverTimeoutMS > maxDowntimeMS:
		return MigrateArgs{}, fmt.Errorf("switchover_timeout_ms %d out of range: 0 (the default) to %d", a.SwitchoverTimeoutMS, maxDowntimeMS)
	case a.IncomingTimeoutMS < 0 || a.IncomingTimeoutMS > maxDowntimeMS:
		return MigrateArgs{}, fmt.Errorf("incoming_timeout_ms %d out of range: 0 (the default) to %d", a.IncomingTimeoutMS, maxDowntimeMS)
	}
	return a, nil
}

// canMigrate says whether a VM in state st can start a migration in role.
func (v *VM) canMigrate(role transport.Role, st State) error {
	switch {
	case role == transport.RoleSend && st != StateRunning:
		return fmt.Errorf("cannot migrate a VM that is %s", st)
	case role == transport.RoleReceive && !v.cfg.Incoming:
		return errors.New("this VM was not started with -incoming")
	case role == transport.RoleReceive && st != StateIncoming:
		return fmt.Errorf("this VM is %s: only a VM that holds no guest yet can receive one (start a new ferry-vmm -incoming)", st)
	}
	return nil
}

// launchTransport starts the plugin with the guest RAM files and checks
// the transport block against its schema. The files stay open until the
// transport is closed (the client checks Open's files against them).
func (v *VM) launchTransport(ctx context.Context, a MigrateArgs, opt *engine.Options) (transport.Transport, []*os.File, error) {
	files, _, err := engine.RAMFiles(migrationVM{v: v}.RAM())
	if err != nil {
		return nil, nil, err
	}
	tr, err := transport.Launch(ctx, a.Plugin, files, hclogFor(v.log))
	if err != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("start transport plugin %s: %w", a.Plugin, err)
	}
	sch, err := tr.Schema(ctx)
	if err == nil {
		opt.Transport, err = schema.Coerce(sch, a.Transport)
	}
	if err != nil {
		tr.Close()
		closeAll(files)
		return nil, nil, fmt.Errorf("transport plugin %s: %w", a.Plugin, err)
	}
	return tr, files, nil
}

// endMigration applies the outcome, publishes the report and gives the
// VM back to the control commands, in one step under the run lock:
// whoever sees the report sees the VM's final state, and no pause or
// resume can slip in between.
func (v *VM) endMigration(own *migrationOwner, mg *migration, role transport.Role, rep engine.Report, err error) {
	side := sideAfter(role, rep)
	own.release(func() {
		v.migrationDone(role, side, err, func() { mg.finish(rep, side) })
	})
}

// migrationDone applies the outcome, then records it (record) so that
// migrate-status never reports a side before the VM is in its state. A
// source that handed its VM over stays paused until quit, for as long as
// that takes: nothing here stops it. A handover-unknown leaves the VM
// paused on either side until migrate-resolve. A destination that failed
// exits with the error.
func (v *VM) migrationDone(role transport.Role, side Side, err error, record func()) {
	switch side {
	case SideMigrated:
		v.setStateIf(StatePaused, StateMigrated)
		v.log.Info("migration completed: the VM now runs on the destination; paused here until quit")
	case SideUnknown:
		v.setStateIf(StatePaused, StateHandoverUnknown)
		v.log.Error("handover unknown: the VM stays paused here until migrate-resolve (see docs/HANDOVER.md)",
			"role", role.String(), "err", err)
	case SideFailed:
		record()
		v.finish(1, fmt.Errorf("incoming migration failed: %w", err))
		return
	case SideRunning:
		if role == transport.RoleSend {
			v.log.Warn("migration failed; the VM keeps running here", "err", err)
		} else {
			v.log.Info("incoming migration completed: the VM runs here")
		}
	}
	record()
}

// hclogFor adapts the VMM's slog logger for go-plugin.
func hclogFor(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Info, Output: slogWriter{l}})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(string(trimNewline(p)), "source", "plugin")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// credentials returns the arguments' credentials, none when absent.
func (a MigrateArgs) credentials() transport.Credentials {
	if a.Credentials == nil {
		return transport.Credentials{}
	}
	return *a.Credentials
}
