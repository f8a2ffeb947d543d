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
//	migrate-status               → Migration (progress, and the report when done)
//	migrate-cancel               → cancels a running migration (the source keeps running)
func (v *VM) serveMigration(s *control.Server) {
	mg := &migration{}
	s.Handle("migrate-send", func(_ context.Context, raw json.RawMessage) (any, error) {
		return v.startMigration(mg, raw, transport.RoleSend)
	})
	s.Handle("migrate-incoming", func(_ context.Context, raw json.RawMessage) (any, error) {
		return v.startMigration(mg, raw, transport.RoleReceive)
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

func (v *VM) startMigration(mg *migration, raw json.RawMessage, role transport.Role) (any, error) {
	var a MigrateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(a.Plugin) {
		return nil, fmt.Errorf("plugin must be an absolute path, got %q", a.Plugin)
	}
	switch st := v.Status().State; {
	case role == transport.RoleSend && st != StateRunning:
		return nil, fmt.Errorf("cannot migrate a VM that is %s", st)
	case role == transport.RoleReceive && !v.cfg.Incoming:
		return nil, errors.New("this VM was not started with -incoming")
	}
	opt := engine.Options{MaxDowntime: time.Duration(a.MaxDowntimeMS) * time.Millisecond,
		Bandwidth: a.Bandwidth, MaxPasses: a.MaxPasses, VerifyPages: a.VerifyPages, Log: v.log, Credentials: a.credentials()}
	ctx, cancel := context.WithCancel(context.Background())
	if err := mg.begin(role.String(), cancel); err != nil {
		cancel()
		return nil, err
	}
	opt.Progress = mg.progress
	tr, files, err := v.launchTransport(ctx, a, &opt)
	if err != nil {
		mg.finish(engine.Report{Status: "failed", Error: err.Error()})
		cancel()
		return nil, err
	}
	go func() {
		defer cancel()
		var rep engine.Report
		var err error
		if role == transport.RoleSend {
			hs := v.startHints(ctx, a.Hints)
			opt.Hints = hs.sources
			rep, err = engine.Send(ctx, migrationVM{v}, tr, opt)
			rep.Hints = append(rep.Hints, hs.failed...)
			hs.close()
		} else {
			rep, err = engine.Receive(ctx, migrationVM{v}, tr, opt)
		}
		tr.Close()
		closeAll(files)
		mg.finish(rep)
		v.migrationDone(role, err)
	}()
	return mg.status(), nil
}

// launchTransport starts the plugin with the guest RAM files and checks
// the transport block against its schema. The files stay open until the
// transport is closed (the client checks Open's files against them).
func (v *VM) launchTransport(ctx context.Context, a MigrateArgs, opt *engine.Options) (transport.Transport, []*os.File, error) {
	files, _, err := engine.RAMFiles(migrationVM{v}.RAM())
	if err != nil {
		return nil, nil, err
	}
	tr, err := transport.Launch(ctx, a.Plugin, files, hclogFor(v.log))
	if err != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("start transport plugin %s: %w", a.Plugin, err)
	}
	schema, err := tr.Schema(ctx)
	if err == nil {
		opt.Transport, err = transport.Coerce(schema, a.Transport)
	}
	if err != nil {
		tr.Close()
		closeAll(files)
		return nil, nil, fmt.Errorf("transport plugin %s: %w", a.Plugin, err)
	}
	return tr, files, nil
}

// migrationDone applies the outcome: a source that handed its VM over
// stays paused until quit (or stops by itself after a grace period); a
// destination that failed exits with the error.
func (v *VM) migrationDone(role transport.Role, err error) {
	switch {
	case role == transport.RoleSend && err == nil:
		v.setStateIf(StatePaused, StateMigrated)
		v.log.Info("migration completed: the VM now runs on the destination")
		time.AfterFunc(time.Minute, v.Stop) // nobody asked for the report: go anyway
	case role == transport.RoleSend:
		v.log.Warn("migration failed; the VM keeps running here", "err", err)
	case err != nil:
		v.finish(1, fmt.Errorf("incoming migration failed: %w", err))
	default:
		v.log.Info("incoming migration completed: the VM runs here")
	}
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
