package vmm

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// Tag fingerprints as the engine reports them: tagA the migration's,
// tagB another's.
const (
	tagA = "0a0a0a0a0a0a0a0a"
	tagB = "0b0b0b0b0b0b0b0b"
)

// tagCase is one act of TestControlTagFingerprints on a VMM whose
// migration has no id and reports tagA.
type tagCase struct {
	name string
	role transport.Role
	// end ends the migration (nil: it runs, and reports tagA).
	end func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error)
	// act sends the act naming tag ("": none, as a client of a VMM
	// before api.TagsHonoured sends it).
	act func(call func(string, any, any) error, tag string) error
	// acted reports whether the act took.
	acted func(v *VM, cancels int) bool
}

// endTagged ends own's migration (role) with report status st,
// reporting tagA (endAs).
func endTagged(t *testing.T, v *VM, own *migrationOwner, role transport.Role, st engine.Status) {
	t.Helper()
	endAs(t, v, own, role, engine.Report{Status: st, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy, TagFingerprint: tagA})
}

// resolveAct is the act migrate-resolve action, naming tag.
func resolveAct(action string) func(func(string, any, any) error, string) error {
	return func(call func(string, any, any) error, tag string) error {
		return call("migrate-resolve", api.ResolveArgs{Action: action, TagFingerprint: tag}, nil)
	}
}

// sideIs is an acted that checks the migration's side.
func sideIs(want api.Side) func(*VM, int) bool {
	return func(v *VM, _ int) bool { return v.migration().status().Side == want }
}

// stopped reports whether quit stopped v (it does before it answers).
func stopped(v *VM, _ int) bool {
	select {
	case <-v.stopped:
		return true
	default:
		return false
	}
}

func tagCases() []tagCase {
	unknown := func(role transport.Role) func(*testing.T, *VM, *migrationOwner, func(string, any, any) error) {
		return func(t *testing.T, v *VM, own *migrationOwner, _ func(string, any, any) error) {
			endTagged(t, v, own, role, engine.StatusHandoverUnknown)
		}
	}
	quit := func(call func(string, any, any) error, tag string) error {
		return call("quit", api.IDArgs{TagFingerprint: tag}, nil)
	}
	return []tagCase{
		{"migrate-cancel", transport.RoleSend, nil, func(call func(string, any, any) error, tag string) error {
			return call("migrate-cancel", api.IDArgs{TagFingerprint: tag}, nil)
		}, func(_ *VM, cancels int) bool { return cancels == 1 }},
		{"migrate-resolve migrated", transport.RoleSend, unknown(transport.RoleSend), resolveAct(api.ResolveMigrated), sideIs(api.SideMigrated)},
		{"migrate-resolve resume, source", transport.RoleSend, unknown(transport.RoleSend), resolveAct(api.ResolveResume), sideIs(api.SideRunning)},
		{"migrate-resolve resume, destination", transport.RoleReceive, unknown(transport.RoleReceive), resolveAct(api.ResolveResume), sideIs(api.SideRunning)},
		{"migrate-resolve discard", transport.RoleReceive, unknown(transport.RoleReceive), resolveAct(api.ResolveDiscard), sideIs(api.SideDiscarded)},
		{"quit, source migrated", transport.RoleSend, func(t *testing.T, v *VM, own *migrationOwner, _ func(string, any, any) error) {
			endTagged(t, v, own, transport.RoleSend, engine.StatusCompleted)
		}, quit, stopped},
		{"quit, destination discarded", transport.RoleReceive, func(t *testing.T, v *VM, own *migrationOwner, call func(string, any, any) error) {
			endTagged(t, v, own, transport.RoleReceive, engine.StatusHandoverUnknown)
			if err := call("migrate-resolve", api.ResolveArgs{Action: api.ResolveDiscard}, nil); err != nil {
				t.Fatal(err)
			}
		}, quit, stopped},
	}
}

// TestControlTagFingerprints: on a real control socket, every act on a
// migration without an id (migrate-cancel, migrate-resolve migrated,
// resume and discard, quit) that names another tag fingerprint than the
// one its migration reports is refused, naming both, and changes
// nothing; one that names the same acts, and so does one that names
// none, as a client of a VMM before api.TagsHonoured sends it. Found by
// review: the acts of migrate -resolve on two id-less sides named no
// migration, so one that found a VMM's migration by its fingerprint
// acted on whatever migration that VMM held by the act (another id-less
// one begun in between, or a VMM started anew at the socket).
func TestControlTagFingerprints(t *testing.T) {
	for _, tc := range tagCases() {
		for _, tag := range []string{tagB, "", tagA} {
			t.Run(tc.name+"/"+tagName(tag), func(t *testing.T) {
				v, call := servedAs(t, tc.role)
				mg := v.migration()
				cancels := 0
				own := claimAs(t, v, tc.role, "", func() { cancels++ })
				mg.progress(engine.Progress{Phase: engine.PhaseDirty, Handover: engine.HandoverLive, TagFingerprint: tagA})
				if tc.end != nil {
					tc.end(t, v, own, call)
				}
				state, side := v.Status().State, mg.status().Side
				err := tc.act(call, tag)
				acted := tc.acted(v, cancels)
				if tag != tagB {
					if err != nil || !acted {
						t.Fatalf("naming %s: %v, acted %v; want it acted", tagName(tag), err, acted)
					}
					return
				}
				if acted || v.Status().State != state || mg.status().Side != side {
					t.Fatalf("naming another fingerprint: acted %v, VM %s -> %s, side %s -> %s (%v); want nothing changed",
						acted, state, v.Status().State, side, mg.status().Side, err)
				}
				if err == nil || !strings.Contains(err.Error(), "tag fingerprint "+tagB) || !strings.Contains(err.Error(), "tag fingerprint "+tagA) ||
					!strings.Contains(err.Error(), "nothing changed") {
					t.Fatalf("naming another fingerprint: %v; want a refusal naming both", err)
				}
			})
		}
	}
}

// tagName names a fingerprint in a subtest's name.
func tagName(tag string) string {
	switch tag {
	case "":
		return "none"
	case tagA:
		return "same"
	}
	return "other"
}

// TestControlTagFingerprintNotYet: a migration that reports no
// fingerprint yet (a source before its first progress after HELLO, or a
// migration that never sent or took one) is not the one a caller names
// by a fingerprint: the act is refused, and so on a VMM that holds no
// migration; a malformed fingerprint is refused before anything acts;
// quit naming the fingerprint refuses a VM whose guest ran since, as
// quit naming the id does (TestQuitRanSince).
func TestControlTagFingerprintNotYet(t *testing.T) {
	v := fakeVM(StateRunning)
	call := serveCalls(t, v)
	named := api.IDArgs{TagFingerprint: tagA}
	for cmd, args := range map[string]any{"migrate-cancel": named, "migrate-start-postcopy": named, "quit": named,
		"migrate-resolve": api.ResolveArgs{Action: api.ResolveResume, TagFingerprint: tagA}} {
		if err := call(cmd, args, nil); err == nil || !strings.Contains(err.Error(), "holds no migration") {
			t.Errorf("%s naming a fingerprint on a VMM without a migration: %v", cmd, err)
		}
	}
	for _, bad := range []string{"0A0A0A0A0A0A0A0A", tagA + "0", "0a0a0a0a0a0a0a0\n", strings.Repeat("0", 1<<12)} {
		for cmd, args := range map[string]any{"migrate-cancel": api.IDArgs{TagFingerprint: bad}, "quit": api.IDArgs{TagFingerprint: bad},
			"migrate-resolve": api.ResolveArgs{Action: api.ResolveQuery, TagFingerprint: bad}} {
			if err := call(cmd, args, nil); err == nil || !strings.Contains(err.Error(), "16 lower-case hex digits") || len(err.Error()) > 200 {
				t.Errorf("%s naming the malformed fingerprint %.20q: %.200v", cmd, bad, err)
			}
		}
	}
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("VM %s after refused commands, want running", st)
	}

	mg := v.migration()
	cancels := 0
	own := claimAs(t, v, transport.RoleSend, "", func() { cancels++ })
	mg.progress(engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverLive}) // HELLO not reported yet
	if err := call("migrate-cancel", named, nil); err == nil || !strings.Contains(err.Error(), "no tag fingerprint (yet)") || cancels != 0 {
		t.Fatalf("migrate-cancel naming %s beside a migration that reports none yet: %v (cancelled %d times)", tagA, err, cancels)
	}

	// Failed, resumed by the engine: quit naming its fingerprint is
	// refused, quit naming none ends it.
	endFailedResumed(t, v, own, tagA)
	if err := call("quit", named, nil); err == nil || !strings.Contains(err.Error(), "the guest has run here since") ||
		!strings.Contains(err.Error(), "tag fingerprint "+tagA) {
		t.Fatalf("quit naming %s after the guest ran here: %v, want refused", tagA, err)
	} else if !strings.Contains(err.Error(), "quit naming no migration ends it") {
		// Its hint names what ends it: not "quit without an id", which
		// this quit was, and which was refused.
		t.Fatalf("quit naming %s after the guest ran here: %v, want the hint to quit naming no migration", tagA, err)
	}
	if st := v.Status().State; st != StateRunning {
		t.Fatalf("after a refused quit: VM %s, want running", st)
	}
	quitStops(t, v, "naming no migration", call("quit", api.IDArgs{}, nil))
}
