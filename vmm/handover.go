package vmm

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// Resolving a handover whose outcome is unknown (docs/HANDOVER.md).
//
// When the engine ends in engine.HandoverUnknown, the VM stays paused in
// StateHandoverUnknown: pause and resume refuse it, and nothing here
// resumes, discards or stops it on a timer. Only migrate-resolve moves it:
//
//	source       handover-unknown ─ resume ──►   running   (the destination was discarded)
//	                              └ migrated ─►  migrated  (the destination runs it; quit later)
//	destination  handover-unknown ─ resume ──►   running   (the source was told "migrated";
//	                              │                         refused after a switch to post-copy
//	                              │                         unless every page had arrived)
//	                              └ discard ──►  discarded (never runs; stays until quit)
//
// The caller (migrate) must ask both sides first and move the source
// only after the destination confirmed: exactly one side may run. A
// discarded destination stays (paused, refusing to run) until quit, so a
// later "migrate -resolve" can still see that it was discarded and not
// lost: a VMM that is gone proves nothing.

// sideAfter is the side a finished migration leaves this VMM on. ran
// says whether the guest ran here after the migration paused it: the VM
// runs now, or the engine's Resume ran it again (migrationOwner.resumed),
// both read under the run lock. A source whose migration failed is
// running if it ran, even if its VM stopped since (the guest powered off
// or failed, or the VMM's shutdown came once the handover ended): a
// destination that loaded the state holds an older copy, which must
// never run (plan discards it). It is failed if it did not run: the VM
// was stopped before the engine could resume it (the VMM's own
// shutdown, which does not wait before the handover began, or a guest
// that powered off during a live pass), so a destination that loaded
// the state may hold the only copy, and "running" would have migrate
// give it up. The VM's state alone cannot tell the two apart: a stop
// does not take the run lock, and a guest resumed a moment before its
// power-off would read as never resumed.
func sideAfter(role transport.Role, rep engine.Report, ran bool) api.Side {
	switch {
	case rep.Status == engine.StatusHandoverUnknown:
		return api.SideUnknown
	case rep.Status == engine.StatusPostcopyBroken:
		return api.SidePostcopyBroken
	case role == transport.RoleSend && rep.Status == engine.StatusCompleted:
		return api.SideMigrated
	case role == transport.RoleSend && ran:
		return api.SideRunning
	case role == transport.RoleSend:
		return api.SideFailed
	case rep.Status == engine.StatusCompleted:
		return api.SideRunning
	}
	return api.SideFailed
}

func (v *VM) serveResolve(s *control.Server, mg *migration) {
	s.Handle("migrate-resolve", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a api.ResolveArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		if err := checkNamed(resolveNamed(a)); err != nil {
			return nil, err
		}
		return v.resolveFor(ctx, mg, a)
	})
}

// resolve is resolveFor for any migration (an action without an id).
func (v *VM) resolve(ctx context.Context, mg *migration, action string) (api.ResolveResult, error) {
	return v.resolveFor(ctx, mg, api.ResolveArgs{Action: action})
}

// resolveFor applies one action under the VM's run lock (runlock.go) and
// then the migration's lock, so two callers cannot both move the same
// side and no pause, resume or migration can slip in between. ctx bounds
// the wait for the run lock. Given an id or a tag fingerprint, it acts
// (or answers a query) only for that migration, and fails, changing
// nothing, while mg holds another or none (checkIDLocked).
func (v *VM) resolveFor(ctx context.Context, mg *migration, a api.ResolveArgs) (res api.ResolveResult, err error) {
	lerr := v.runLocked(ctx, func(context.Context, *migrationOwner) error {
		res, err = v.resolveLocked(mg, a.Action, resolveNamed(a))
		return nil
	})
	if lerr != nil {
		return api.ResolveResult{}, fmt.Errorf("migrate-resolve: %w", lerr)
	}
	return res, err
}

// resolveLocked is resolveFor's work; the caller holds the run lock.
func (v *VM) resolveLocked(mg *migration, action string, n api.IDArgs) (api.ResolveResult, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if err := mg.checkIDLocked("migrate-resolve", n); err != nil {
		return api.ResolveResult{}, err
	}
	res := func() api.ResolveResult {
		r := api.ResolveResult{Side: api.SideNone, VM: v.Status().State, Control: api.ControlVersion}
		if mg.cur != nil {
			r.Role, r.Side, r.Handover, r.ID = mg.cur.Role, mg.cur.Side, mg.cur.Progress.Handover, mg.cur.ID
			r.TagFingerprint = tagFingerprint(mg.cur)
			if mg.cur.Report != nil {
				r.Handover = mg.cur.Report.Handover
			}
		}
		return r
	}
	if action == api.ResolveQuery {
		return res(), nil
	}
	cur := res()
	want, err := resolveTarget(cur.Role, action)
	if err != nil {
		return cur, err
	}
	switch {
	case cur.Side == want:
		return cur, nil // done before: the caller may retry safely
	case cur.Side != api.SideUnknown:
		return cur, fmt.Errorf("nothing to resolve: this side is %s, not %s", cur.Side, api.SideUnknown)
	case want == api.SideRunning && lacksPages(mg.cur):
		return cur, errLacksPages
	}
	switch want {
	case api.SideRunning:
		v.setStateIf(StateHandoverUnknown, StatePaused)
		if err := v.resume(); err != nil {
			v.setStateIf(StatePaused, StateHandoverUnknown)
			return res(), fmt.Errorf("resume: %w (still %s)", err, api.SideUnknown)
		}
		v.log.Warn("handover resolved: the VM runs here")
		v.resolvedHereInShutdown(mg.cur) // a shutdown under way keeps it running (shutdown.go)
	case api.SideMigrated:
		v.setStateIf(StateHandoverUnknown, StateMigrated)
		v.log.Info("handover resolved: the VM runs on the destination; paused here until quit")
	case api.SideDiscarded:
		v.setStateIf(StateHandoverUnknown, StateDiscarded)
		v.log.Info("handover resolved: the VM runs on the source; discarded here, paused until quit")
	}
	mg.cur.Side = want
	return res(), nil
}

// lacksPages reports whether m, a migration whose handover is unknown,
// left this VMM without the whole guest: a destination that switched to
// post-copy and never got COMMIT, and had not got every page by then
// (post-copy sends the rest after RUNNING; the engine closed the
// userfaultfd, so the absent ones would read as zeros). A report that
// does not say how many it lacks counts as lacking.
func lacksPages(m *api.Migration) bool {
	if m.Role != transport.RoleReceive.String() || m.Report == nil || m.Report.Mode != engine.ModePostcopy {
		return false
	}
	return m.Report.PagesMissing == nil || *m.Report.PagesMissing > 0
}

// errLacksPages is migrate-resolve resume's answer where lacksPages.
var errLacksPages = fmt.Errorf("this destination switched to post-copy and never got COMMIT: it lacks pages only the source holds "+
	"(they would read as zeros), so it never runs the guest; resume the source and discard this side (still %s)", api.SideUnknown)

// resolveTarget is the side an action leads to, for this role.
func resolveTarget(role, action string) (api.Side, error) {
	switch {
	case action == api.ResolveResume:
		return api.SideRunning, nil
	case action == api.ResolveDiscard && role == transport.RoleReceive.String():
		return api.SideDiscarded, nil
	case action == api.ResolveMigrated && role == transport.RoleSend.String():
		return api.SideMigrated, nil
	case action == api.ResolveDiscard || action == api.ResolveMigrated:
		return "", fmt.Errorf("%q is not an action for the %s side (source: resume, migrated; destination: resume, discard)",
			action, role)
	}
	return "", fmt.Errorf("unknown action %q: want query, resume, discard (destination) or migrated (source)", action)
}
