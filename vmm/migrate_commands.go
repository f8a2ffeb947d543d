package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// serveMigration registers the migration commands (arguments and
// answers in vmm/api):
//
//	migrate-send MigrateArgs     → starts sending this VM; poll migrate-status
//	migrate-incoming MigrateArgs → starts receiving into this (-incoming) VM
//	migrate-status               → Migration (progress, side, and the report when done)
//	migrate-cancel [IDArgs]      → CancelResult: cancels a running migration (the source keeps
//	                               running); refused on a source writing COMMIT or waiting for
//	                               RUNNING, on a destination acting on COMMIT, and in post-copy,
//	                               where it would lose the guest; the engine decides, so
//	                               "cancelled" is a cancel it applied (migration.go); on a
//	                               destination whose post-copy ended, it ends the wait to tell
//	                               the source how, and says so (linger.go)
//	migrate-resolve ResolveArgs  → ResolveResult: query or resolve a handover-unknown (handover.go)
//	migrate-start-postcopy [IDArgs] → StartPostcopyResult: switch the running migration-send to
//	                               post-copy now (postcopy.go)
//
// Given an id or a tag fingerprint (IDArgs, ResolveArgs), migrate-cancel,
// migrate-resolve and migrate-start-postcopy act only on that migration
// and refuse, changing nothing, on a VMM that holds another one or none
// (migration_id.go). Every migrate-status and migrate-resolve answer
// carries api.ControlVersion, so a client knows the ids are honoured
// (a VMM from before reports none), and the migration's tag
// fingerprint once the engine reported one (tagFingerprint), so a
// client tells two migrations without an id apart.
//
// From migrate-send or migrate-incoming accepted until the migration has
// finished, the migration owns the VM: pause, resume, quit, state-save and
// state-load are refused (runlock.go); status, migrate-status,
// migrate-cancel and migrate-resolve work. migrate-status reports done
// only together with the VM's final state (migrated, running,
// handover-unknown or stopped).
//
// Every control server of one VM (Serve called more than once) acts on
// the same migration record (VM.migrations): a migration started
// through one is seen, cancelled and resolved through any other, and
// the quit and shutdown checks see it too.
func (v *VM) serveMigration(s *control.Server) {
	mg := v.migrations()
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
	s.Handle("migrate-cancel", func(_ context.Context, raw json.RawMessage) (any, error) {
		n, err := decodeID(raw)
		if err != nil {
			return nil, err
		}
		return mg.cancelRunning(n)
	})
	s.Handle("migrate-start-postcopy", mg.handleStartPostcopy)
}

// startMigration checks the arguments, makes the migration the owner of
// the VM's run state (runlock.go; reqCtx bounds the wait for a pause or
// resume in progress), opens the session (framework/session: the
// transport plugin starts and accepts its block, or the command fails;
// the hint providers start at the same time) and runs it in the
// background until it finishes: the report is published as soon as the
// engine returns, and the plugins are stopped after it, except on a
// destination whose migration did not complete (failed, cancelled,
// handover-unknown, post-copy-broken: no guest runs here at its end),
// whose plugins are stopped before (its listening port is free once it
// reports; with a transport in process whose Close hangs, once the VMM
// exits: inprocess.go).
func (v *VM) startMigration(reqCtx context.Context, mg *migration, raw json.RawMessage, role transport.Role) (any, error) {
	spec, id, err := v.migrateSpec(raw)
	if err != nil {
		return nil, err
	}
	// cancel ends the migration's context once it is over; migrate-cancel
	// and the shutdown cancel through stop, which says whether it took.
	base, cancel := context.WithCancel(context.Background())
	ctx, stop := engine.NewCancel(base)
	own, err := v.claim(reqCtx, mg, role.String(), id, cancelWith(stop), func(st State) error { return v.canMigrate(role, st) })
	if err != nil {
		cancel()
		return nil, err
	}
	own.linger.setEnd(cancel) // a plain cancel: the engine follows it after the hold only to end its telling (linger.go)
	spec.Role, spec.Progress = role, mg.progress
	if role == transport.RoleSend {
		spec.Engine.StartPostcopy = mg.switchable()
	}
	m := migrationVM{v: v, own: own}
	s, err := session.Open(ctx, m.RAM(), spec)
	if err != nil {
		own.release(func() { v.unopenedDone(ctx, mg, role, err) })
		cancel()
		return nil, err
	}
	v.plugins.Add(1)
	go func() {
		defer v.plugins.Done()
		defer cancel()
		var rep engine.Report
		var err error
		if role == transport.RoleSend {
			rep, err = s.Send(ctx, m, hintHost{v})
		} else {
			rep, err = s.Receive(ctx, m)
		}
		if role == transport.RoleReceive && rep.Status != engine.StatusCompleted {
			// A destination whose migration did not complete stops its
			// plugins first: its report (and the exit that follows a
			// failed one) then means its listening port is free for
			// the next try at the same address. Nothing after the
			// engine needs the transport (a handover-unknown is
			// resolved through the control socket; a post-copy-broken
			// VM was halted for good). It delays the report by the
			// transport's Close: milliseconds, at most about 9 s for a
			// plugin that answers nothing (its last Stats and Close
			// within 5 s, then its exit within 4 s; one stopped or
			// already hung is killed at once: framework/transport
			// launched.Close), inside the 10 s that migrate's waits
			// for a report add to switchover_timeout; as long at most
			// for a transport in process (boundedClose).
			s.Close()
		}
		v.endMigration(own, mg, role, rep, err) // the report is out: migrate-status says done
		s.Close()                               // then the plugin processes are stopped and waited for (once)
	}()
	return mg.status(), nil
}

// unopenedDone records a migration whose session did not open
// (finishUnopened). A destination whose migration was cancelled exits,
// as one cancelled once its engine ran does (migrationDone): a cancelled
// destination ends one way, whenever the cancel came. One whose plugins
// did not start for another reason (a wrong path, a refused block)
// stays in incoming state, its VM untouched, for a next migrate-incoming
// that fixes the arguments. Called under the run lock (own.release).
func (v *VM) unopenedDone(ctx context.Context, mg *migration, role transport.Role, err error) {
	side := sideAfter(role, engine.Report{}, v.Status().State == StateRunning)
	if mg.finishUnopened(ctx, err, side) == engine.StatusCancelled && role == transport.RoleReceive {
		v.finish(1, fmt.Errorf("incoming migration cancelled while its transport plugin started: %w", err))
	}
}

// maxDowntimeMS bounds max_downtime_ms (a day), so the duration cannot
// overflow.
const maxDowntimeMS = 24 * 3600 * 1000

// parseMigrateArgs decodes and checks the argument of migrate-send and
// migrate-incoming. Hint providers are checked when they start: one that
// cannot costs its hints, not the migration.
func parseMigrateArgs(raw json.RawMessage) (api.MigrateArgs, error) {
	var a api.MigrateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return api.MigrateArgs{}, err
	}
	switch {
	case a.MaxDowntimeMS < 0 || a.MaxDowntimeMS > maxDowntimeMS:
		return api.MigrateArgs{}, fmt.Errorf("max_downtime_ms %d out of range: 0 (the default) to %d", a.MaxDowntimeMS, maxDowntimeMS)
	case a.MaxPasses < 0:
		return api.MigrateArgs{}, fmt.Errorf("max_passes %d must not be negative (0 is the default)", a.MaxPasses)
	case a.SwitchoverTimeoutMS < 0 || a.SwitchoverTimeoutMS > maxDowntimeMS:
		return api.MigrateArgs{}, fmt.Errorf("switchover_timeout_ms %d out of range: 0 (the default) to %d", a.SwitchoverTimeoutMS, maxDowntimeMS)
	case a.IncomingTimeoutMS < 0 || a.IncomingTimeoutMS > maxDowntimeMS:
		return api.MigrateArgs{}, fmt.Errorf("incoming_timeout_ms %d out of range: 0 (the default) to %d", a.IncomingTimeoutMS, maxDowntimeMS)
	case a.ReconnectTimeoutMS < 0 || a.ReconnectTimeoutMS > maxDowntimeMS:
		return api.MigrateArgs{}, fmt.Errorf("reconnect_timeout_ms %d out of range: 0 (the default) to %d", a.ReconnectTimeoutMS, maxDowntimeMS)
	case a.StallTimeoutMS < 0 || a.StallTimeoutMS > maxDowntimeMS:
		return api.MigrateArgs{}, fmt.Errorf("stall_timeout_ms %d out of range: 0 (the default) to %d", a.StallTimeoutMS, maxDowntimeMS)
	case !a.Postcopy.Valid():
		return api.MigrateArgs{}, fmt.Errorf("postcopy %q: want off, auto or always", string(a.Postcopy))
	}
	if err := checkIDText(a.ID); err != nil {
		return api.MigrateArgs{}, err
	}
	return a, session.Check(sessionSpec(a))
}

// migrateSpec turns the arguments of migrate-send or migrate-incoming
// into a session for this VM (its log; Progress is set by the caller)
// and the migration's id.
func (v *VM) migrateSpec(raw json.RawMessage) (session.Spec, string, error) {
	a, err := parseMigrateArgs(raw)
	if err != nil {
		return session.Spec{}, "", err
	}
	spec := sessionSpec(a)
	spec.Log = v.log
	if v.cfg.TransportInProcess && filepath.Base(a.Plugin) == tcpPlugin {
		spec.TransportInProcess = v.inProcessTransport()
	}
	return spec, a.ID, nil
}

// tcpPlugin is the TCP transport plugin's binary, which -transport-in-
// process replaces with transports/tcp linked in.
const tcpPlugin = "ferry-transport-tcp"

// sessionSpec maps the control socket's arguments onto a session.
func sessionSpec(a api.MigrateArgs) session.Spec {
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	spec := session.Spec{
		Transport: session.Plugin{Path: a.Plugin, Config: a.Transport},
		Engine: engine.Options{MaxDowntime: ms(a.MaxDowntimeMS), Bandwidth: a.Bandwidth, MaxPasses: a.MaxPasses,
			VerifyPages: a.VerifyPages, VerifyFree: a.VerifyFree, SwitchoverTimeout: ms(a.SwitchoverTimeoutMS),
			IncomingTimeout: ms(a.IncomingTimeoutMS), Postcopy: a.Postcopy, ReconnectTimeout: ms(a.ReconnectTimeoutMS),
			StallTimeout: ms(a.StallTimeoutMS), MigrationID: a.ID},
		Name: fmt.Sprintf("ferry-vmm[%d]", os.Getpid()),
	}
	if a.Credentials != nil {
		spec.Engine.Credentials = *a.Credentials
	}
	for _, h := range a.Hints {
		spec.Hints = append(spec.Hints, session.Hint{Name: h.Name, Deadline: ms(h.DeadlineMS),
			Plugin: session.Plugin{Path: h.Plugin, Config: h.Config}})
	}
	return spec
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

// endMigration applies the outcome, publishes the report and gives the
// VM back to the control commands, in one step under the run lock:
// whoever sees the report sees the VM's final state, and no pause or
// resume can slip in between. The side is decided there too, from the
// VM's state and whether the engine resumed it (sideAfter).
func (v *VM) endMigration(own *migrationOwner, mg *migration, role transport.Role, rep engine.Report, err error) {
	own.release(func() {
		side := sideAfter(role, rep, v.Status().State == StateRunning || own.resumed)
		v.migrationDone(role, side, err, func() { mg.finish(rep, side) })
	})
}

// migrationDone applies the outcome, then records it (record) so that
// migrate-status never reports a side before the VM is in its state. A
// source that handed its VM over stays paused until quit, for as long as
// that takes: nothing here stops it. A handover-unknown leaves the VM
// paused on either side until migrate-resolve. A destination that failed
// exits with the error; a source that failed and does not run (sideAfter)
// is left as it is. A post-copy destination whose Halt failed stays,
// its guest frozen, until quit (halt_failed.go).
func (v *VM) migrationDone(role transport.Role, side api.Side, err error, record func()) {
	switch side {
	case api.SideMigrated:
		v.setStateIf(StatePaused, StateMigrated)
		v.log.Info("migration completed: the VM now runs on the destination; paused here until quit")
		if err != nil { // engine.ErrPostcopyCheck: handed over all the same
			v.log.Error("migration completed, but", "err", err)
		}
	case api.SideUnknown:
		v.setStateIf(StatePaused, StateHandoverUnknown)
		v.log.Error("handover unknown: the VM stays paused here until migrate-resolve (see docs/HANDOVER.md)",
			"role", role.String(), "err", err)
	case api.SideFailed:
		if role == transport.RoleSend { // stopped before the engine could resume it: it stays stopped
			v.log.Error("migration failed, and the VM does not run here: it stopped before it could be resumed",
				"state", v.Status().State, "err", err)
			break
		}
		record()
		v.finish(1, fmt.Errorf("incoming migration failed: %w", err))
		return
	case api.SidePostcopyBroken:
		if role == transport.RoleReceive && v.notHalted() { // Halt failed: the VMM stays until quit (halt_failed.go)
			record()
			v.log.Error("post-copy broke and the VM could not be halted: its guest is frozen here (a vCPU waits for good on a page "+
				"this destination lacks) and lost; this VMM stays only to answer status, migrate-status and migrate -resolve: "+
				"quit (or a signal) ends its process, and with it the guest; never resume the source's older copy", "err", err)
			return
		}
		if role == transport.RoleReceive { // Halt already stopped the vCPUs for good
			record()
			v.finish(1, fmt.Errorf("post-copy broke, the VM was halted for good: %w", err))
			return
		}
		v.setStateIf(StatePaused, StatePostcopyBroken)
		v.log.Error("post-copy broke: the guest ran on the destination; this paused copy is older and is never resumed; quit ends this VMM",
			"err", err)
	case api.SideRunning:
		if role == transport.RoleSend {
			v.log.Warn("migration failed; the guest ran on here", "state", v.Status().State, "err", err)
		} else {
			v.log.Info("incoming migration completed: the VM runs here")
			if err != nil { // engine.ErrPostcopyCheck: the VM runs here all the same
				v.log.Error("incoming migration completed, but", "err", err)
			}
		}
	}
	record()
}
