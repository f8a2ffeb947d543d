package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// serveCalls serves v's control commands on a socket in a temporary
// directory and returns a function that calls one and decodes its
// answer into res (nil: none).
func serveCalls(t *testing.T, v *VM) func(cmd string, args, res any) error {
	return serveCallsWithin(t, v, 0)
}

// serveCallsWithin is serveCalls with a handler deadline of d
// (control.Server.SetHandlerTimeout; 0: the default).
func serveCallsWithin(t *testing.T, v *VM, d time.Duration) func(cmd string, args, res any) error {
	sock := filepath.Join(t.TempDir(), "c.sock")
	s, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHandlerTimeout(d)
	v.Serve(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func(cmd string, args, res any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return control.Call(ctx, sock, cmd, args, res)
	}
}

// refusedFor checks that err refuses cmd for migration want while the
// VMM holds migration held: it names both ids.
func refusedFor(t *testing.T, cmd string, err error, want, held string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with id %q on the VMM of migration %q: accepted", cmd, want, held)
	}
	if !strings.Contains(err.Error(), `"`+want+`"`) || !strings.Contains(err.Error(), `"`+held+`"`) {
		t.Errorf("%s with id %q: %v; want both ids named (%q, %q)", cmd, want, err, want, held)
	}
}

// TestControlIDs: on a real control socket, migrate-cancel,
// migrate-start-postcopy, migrate-resolve and quit given the id of
// another migration than the one the VMM holds (running, then ended
// handover-unknown, then resolved) are refused, naming both ids, and
// change nothing; given the right id they act. Found by audit: the
// commands carried no id, so a slow migrate of job A cancelled,
// switched, resolved or quit whatever migration the VMM held by then,
// one started by another run.
func TestControlIDs(t *testing.T) {
	v, call := servedAs(t, transport.RoleSend)
	mg := v.migration()
	cancels := 0
	own := claimAs(t, v, transport.RoleSend, "a", func() { cancels++ })
	toPostcopy := mg.switchable() // what startMigration hands to the engine
	mg.progress(engine.Progress{Phase: engine.PhaseDirty, Mode: engine.ModePrecopy, Handover: engine.HandoverLive})
	other := api.IDArgs{ID: "b"}

	// Running: the other id changes nothing.
	var cres api.CancelResult
	refusedFor(t, "migrate-cancel", call("migrate-cancel", other, &cres), "b", "a")
	refusedFor(t, "migrate-start-postcopy", call("migrate-start-postcopy", other, nil), "b", "a")
	refusedFor(t, "migrate-resolve", call("migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery, ID: "b"}, nil), "b", "a")
	select {
	case <-toPostcopy:
		t.Fatal("migrate-start-postcopy for another migration switched this one to post-copy")
	default:
	}
	if st := mg.status(); cancels != 0 || st.Done || cres.Cancelled {
		t.Fatalf("after refused commands: cancelled %d times, done %v (%+v)", cancels, st.Done, cres)
	}
	// Running: the right id acts.
	var pres api.StartPostcopyResult
	if err := call("migrate-start-postcopy", api.IDArgs{ID: "a"}, &pres); err != nil || !pres.Requested {
		t.Fatalf("migrate-start-postcopy with its id: %+v, %v", pres, err)
	}
	select {
	case <-toPostcopy:
	default:
		t.Fatal("migrate-start-postcopy with its id did not switch")
	}
	if err := call("migrate-cancel", api.IDArgs{ID: "a"}, &cres); err != nil || !cres.Cancelled || cancels != 1 {
		t.Fatalf("migrate-cancel with its id: %+v, %v (cancelled %d times)", cres, err, cancels)
	}

	// The migration ends handover-unknown: migrate-resolve for another
	// one leaves it so.
	endUnknown(t, v, own, transport.RoleSend)
	for _, action := range []string{api.ResolveResume, api.ResolveMigrated, api.ResolveQuery} {
		refusedFor(t, "migrate-resolve "+action, call("migrate-resolve", api.ResolveArgs{Action: action, ID: "b"}, nil), "b", "a")
	}
	refusedFor(t, "migrate-cancel", call("migrate-cancel", other, nil), "b", "a")
	if st, side := v.Status().State, mg.status().Side; st != StateHandoverUnknown || side != api.SideUnknown {
		t.Fatalf("after refused resolves: VM %s, side %s; want both handover-unknown", st, side)
	}
	var rres api.ResolveResult
	if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveResume, ID: "a"}, &rres); err != nil || rres.Side != api.SideRunning {
		t.Fatalf("migrate-resolve resume with its id: %+v, %v", rres, err)
	}

	// Resolved, the VMM still holds migration a: quit for another one
	// leaves the VM running, and so does quit for a: the guest runs
	// here since a ended (TestQuitRanSince); quit without an id ends it.
	refusedFor(t, "quit", call("quit", other, nil), "b", "a")
	if err := call("quit", api.IDArgs{ID: "a"}, nil); err == nil || !strings.Contains(err.Error(), "has run here since") {
		t.Fatalf("quit with its id after the guest was resumed here: %v, want refused", err)
	}
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("after refused quits: VM %s, want running", st)
	}
	quitStops(t, v, "without an id", call("quit", nil, nil))
}

// TestControlIDsNoMigration: a VMM that holds no migration (one started
// anew at a job's socket) refuses every command given an id, and says it
// holds none; without an id they answer as before.
func TestControlIDsNoMigration(t *testing.T) {
	v := fakeVM(StateRunning)
	call := serveCalls(t, v)
	for _, c := range []struct {
		cmd  string
		args any
	}{
		{"migrate-cancel", api.IDArgs{ID: "a"}},
		{"migrate-start-postcopy", api.IDArgs{ID: "a"}},
		{"migrate-resolve", api.ResolveArgs{Action: api.ResolveResume, ID: "a"}},
		{"quit", api.IDArgs{ID: "a"}},
	} {
		err := call(c.cmd, c.args, nil)
		if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), "holds no migration") {
			t.Errorf("%s with an id on a VMM without a migration: %v", c.cmd, err)
		}
	}
	long := strings.Repeat("x", api.MaxIDLen+1) // bounded as migrate-send's
	for _, cmd := range []string{"migrate-cancel", "migrate-start-postcopy", "quit"} {
		if err := call(cmd, api.IDArgs{ID: long}, nil); err == nil || !strings.Contains(err.Error(), "at most 64") {
			t.Errorf("%s with an id of %d bytes: %v", cmd, len(long), err)
		}
	}
	if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery, ID: long}, nil); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("migrate-resolve with an id of %d bytes: %v", len(long), err)
	}
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("VM %s after refused commands, want running", st)
	}
	var cres api.CancelResult
	if err := call("migrate-cancel", nil, &cres); err != nil || cres.Why != "no migration is running" {
		t.Errorf("migrate-cancel without an id: %+v, %v", cres, err)
	}
	if err := call("quit", nil, nil); err != nil {
		t.Errorf("quit without an id: %v", err)
	}
}

// TestIDText: an id with a control or format character (a newline, an
// escape sequence, U+202E that reverses what a terminal shows after it)
// is refused where a migration takes it
// (migrate-send, migrate-incoming: parseMigrateArgs) and where a command
// names it, before anything acts: ids reach logs, statuses and the
// lines migrate prints for an operator. Before, migrate-send took any
// 64 bytes.
func TestIDText(t *testing.T) {
	for _, id := range []string{"a\nb", "\x1b[2J", "a\x00", "a\u202eb", "a\tb", "\u0085"} {
		raw, err := json.Marshal(api.MigrateArgs{Plugin: "/bin/true", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseMigrateArgs(raw); err == nil || !strings.Contains(err.Error(), "id ") {
			t.Errorf("migrate-send with id %q: %v, want refused", id, err)
		}
		named, _ := json.Marshal(api.IDArgs{ID: id})
		if _, err := decodeID(named); err == nil {
			t.Errorf("an act naming id %q was not refused", id)
		}
		if err := checkIDText(id); err == nil {
			t.Errorf("migrate-resolve naming id %q was not refused", id)
		}
	}
	for _, id := range []string{"4SYZ2PZ4PNOXOWLTTAEQ2MJUVY", "job-1.a_b", "prise de contrôle"} {
		raw, _ := json.Marshal(api.MigrateArgs{Plugin: "/bin/true", ID: id})
		if a, err := parseMigrateArgs(raw); err != nil || a.ID != id {
			t.Errorf("id %q: %+v, %v, want taken", id, a.ID, err)
		}
	}
}

// TestQuitRanSince: quit given the id of the migration the VMM holds
// ends only a VM whose guest has not run here since that migration
// ended: a source that handed the guest over (migrated) or a discarded
// destination is quit; a source whose migration failed and resumed it
// (even if paused by hand since), or a side resumed by migrate-resolve,
// holds the guest, and quit naming the migration is refused, saying
// why, and changes nothing. Found by audit: quit checked the id only,
// so a migrate that found a source migrated, then a resolve or an
// operator resumed it there, stopped its only copy with a later quit.
func TestQuitRanSince(t *testing.T) {
	for _, tc := range []struct {
		name string
		role transport.Role
		end  func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error)
		quit bool // quit "a" ends the VM
	}{
		{"source migrated", transport.RoleSend, func(t *testing.T, v *VM, own *migrationOwner, _ func(string, any, any) error) {
			endAs(t, v, own, transport.RoleSend, engine.Report{Status: engine.StatusCompleted})
		}, true},
		{"source failed, resumed, paused by hand", transport.RoleSend, func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error) {
			endFailedResumed(t, v, own, "")
			if err := call("pause", nil, nil); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"destination discarded", transport.RoleReceive, func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error) {
			endUnknown(t, v, own, transport.RoleReceive)
			if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveDiscard, ID: "a"}, nil); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"destination resumed by resolve, paused by hand", transport.RoleReceive, func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error) {
			endUnknown(t, v, own, transport.RoleReceive)
			if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveResume, ID: "a"}, nil); err != nil {
				t.Fatal(err)
			}
			if err := call("pause", nil, nil); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, call := servedAs(t, tc.role)
			own := claimAs(t, v, tc.role, "a", nil)
			tc.end(t, v, own, call)
			before := v.Status().State
			err := call("quit", api.IDArgs{ID: "a"}, nil)
			stopped := false
			select { // quit stops the VM before it answers
			case <-v.stopped:
				stopped = true
			default:
			}
			switch {
			case stopped && !tc.quit:
				t.Fatalf("quit a stopped a VM (%s) whose guest ran here since migration a ended (%v)", before, err)
			case !stopped && tc.quit:
				t.Fatalf("quit a: %v; the VM (%s) was not stopped", err, before)
			case !stopped && (err == nil || !strings.Contains(err.Error(), `quit for migration "a" refused: the guest has run here since`)):
				t.Fatalf("quit a: %v, want a refusal saying why", err)
			case !stopped && v.Status().State != before:
				t.Fatalf("a refused quit moved the VM from %s to %s", before, v.Status().State)
			}
		})
	}
}

// endUnknown ends own's migration (role) handover-unknown (endAs).
func endUnknown(t *testing.T, v *VM, own *migrationOwner, role transport.Role) {
	t.Helper()
	endAs(t, v, own, role, engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy})
}

// endAs ends own's migration (role) with rep, as its engine's return
// does, the VM paused first (loaded on a destination); one that ends
// handover-unknown with engine.ErrHandoverUnknown.
func endAs(t *testing.T, v *VM, own *migrationOwner, role transport.Role, rep engine.Report) {
	t.Helper()
	if role == transport.RoleReceive {
		v.setStateIf(StateIncoming, StatePaused) // what LoadState does
	} else if err := (migrationVM{v: v, own: own}).Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	var err error
	if rep.Status == engine.StatusHandoverUnknown {
		err = engine.ErrHandoverUnknown
	}
	v.endMigration(own, v.migration(), role, rep, err)
}

// endFailedResumed ends own's outgoing migration failed, reporting tag
// fingerprint tag, as its engine does once it paused the VM and resumed
// it.
func endFailedResumed(t *testing.T, v *VM, own *migrationOwner, tag string) {
	t.Helper()
	m := migrationVM{v: v, own: own}
	if err := m.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	v.endMigration(own, v.migration(), transport.RoleSend, engine.Report{Status: engine.StatusFailed, TagFingerprint: tag}, errors.New("cut"))
}

// servedAs is a fake VM served on a control socket (serveCalls) in the
// state a migration of role starts from: running for a source,
// incoming for a destination.
func servedAs(t *testing.T, role transport.Role) (*VM, func(cmd string, args, res any) error) {
	t.Helper()
	st := StateRunning
	if role == transport.RoleReceive {
		st = StateIncoming
	}
	v := fakeVM(st)
	v.cfg.Incoming = role == transport.RoleReceive
	return v, serveCalls(t, v)
}

// claimAs makes a migration of role, with id, own v, as migrate-send
// or migrate-incoming does (claimIn, in v's migration record).
func claimAs(t *testing.T, v *VM, role transport.Role, id string, onCancel func()) *migrationOwner {
	t.Helper()
	return claimIn(t, v, v.migrations(), role, id, onCancel)
}

// claimIn makes a migration of role, with id, recorded in mg, own v, as
// migrate-send or migrate-incoming does (canMigrate must let it); its
// cancel takes, and calls onCancel (nil: nothing more).
func claimIn(t *testing.T, v *VM, mg *migration, role transport.Role, id string, onCancel func()) *migrationOwner {
	t.Helper()
	own, err := v.claim(context.Background(), mg, role.String(), id, takes(func() {
		if onCancel != nil {
			onCancel()
		}
	}), func(st State) error { return v.canMigrate(role, st) })
	if err != nil {
		t.Fatal(err)
	}
	return own
}

// TestControlVersionReported: migrate-status and migrate-resolve (a
// query too, and on a VMM that holds no migration) report the VMM's
// api.ControlVersion, from which migrate learns that an id it names in
// migrate-cancel or quit is honoured. A VMM from before leaves it out.
func TestControlVersionReported(t *testing.T) {
	v := fakeVM(StateRunning)
	call := serveCalls(t, v)
	var rq api.ResolveResult
	if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery}, &rq); err != nil || rq.Control != api.ControlVersion {
		t.Fatalf("migrate-resolve query, no migration: %+v, %v; want control %d", rq, err, api.ControlVersion)
	}
	claimAs(t, v, transport.RoleSend, "a", nil)
	var st api.Migration
	if err := call("migrate-status", nil, &st); err != nil || st.Control != api.ControlVersion || st.ID != "a" {
		t.Fatalf("migrate-status: %+v, %v; want migration a, control %d", st, err, api.ControlVersion)
	}
	rq = api.ResolveResult{}
	if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery, ID: "a"}, &rq); err != nil || rq.Control != api.ControlVersion {
		t.Fatalf("migrate-resolve query: %+v, %v; want control %d", rq, err, api.ControlVersion)
	}
}

// TestTagFingerprintReported: migrate-status and migrate-resolve report
// the migration's tag fingerprint (api.TagsReported), from its last
// progress while it runs and from its report once it ended, so that
// migrate -resolve tells two migrations without an id apart; nothing
// before the engine reported one.
func TestTagFingerprintReported(t *testing.T) {
	v := fakeVM(StateRunning)
	call := serveCalls(t, v)
	mg := v.migration()
	own := claimAs(t, v, transport.RoleSend, "", nil)
	both := func(want string) {
		t.Helper()
		var st api.Migration
		var rq api.ResolveResult
		if err := call("migrate-status", nil, &st); err != nil || st.TagFingerprint != want {
			t.Errorf("migrate-status: fingerprint %q, %v; want %q", st.TagFingerprint, err, want)
		}
		if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery}, &rq); err != nil || rq.TagFingerprint != want ||
			rq.Control < api.TagsReported {
			t.Errorf("migrate-resolve query: fingerprint %q, control %d, %v; want %q, at least %d", rq.TagFingerprint, rq.Control, err, want, api.TagsReported)
		}
	}
	mg.progress(engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverLive})
	both("")
	mg.progress(engine.Progress{Phase: engine.PhaseBulk, Handover: engine.HandoverLive, TagFingerprint: "0123456789abcdef"})
	both("0123456789abcdef")
	own.release(func() {
		mg.finish(engine.Report{Status: engine.StatusHandoverUnknown, TagFingerprint: "fedcba9876543210"}, api.SideUnknown)
	})
	both("fedcba9876543210")
}
