package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// The role of the VMM at a job's source socket where migrate ends or
// keeps a source without rolesPair's look at both sides: quitSource,
// once the guest runs on the destination, and resolve's verdict source
// after the source's resume (sourceSends).

// TestQuitSourceOnlyASender: the VMM at the source's socket reports
// migration a handed over (migrated, or postcopy-broken) in each role.
// Only a sender is quit. A receiver of a (a job whose sockets are
// written the wrong way round, an id reused by hand) may hold the
// newest copy of a guest still being recovered, post-copy's only copy
// that ran; a role this migrate does not know, or none, says nothing
// of what it holds: each is left alone, asked nothing, and quitSource
// says so (*errNotSource). Before, every one of them was quit.
func TestQuitSourceOnlyASender(t *testing.T) {
	for _, side := range []api.Side{api.SideMigrated, api.SidePostcopyBroken} {
		for _, tc := range []struct {
			role string
			quit bool
			say  string // in quitSource's error when left alone
		}{
			{"send", true, ""},
			{"receive", false, "receives in migration id a"},
			{"relay", false, `reports role "relay", which this migrate does not know`},
			{"", false, "but no role"},
		} {
			t.Run(string(side)+"/"+tc.role, func(t *testing.T) {
				c := newRunCase(t)
				c.src.role, c.src.id = tc.role, "a"
				c.src.finishWith(0, engine.StatusCompleted, side)
				var log strings.Builder
				got, err := quitSource(c.src.sock, "a", "", &log, nil)
				t.Logf("side %s, err %v, calls %s\n%s", got, err, c.callList(), log.String())
				if tc.quit {
					if err != nil || got != side {
						t.Errorf("side %s, err %v: want %s, quit", got, err, side)
					}
					c.wantAsked(t, "quit a", "")
					return
				}
				c.wantNothingAsked(t)
				var notSrc *errNotSource
				if !errors.As(err, &notSrc) {
					t.Fatalf("err %v: want an *errNotSource", err)
				}
				wantSays(t, err.Error(), tc.say, c.src.sock, "left alone")
			})
		}
	}
}

// TestResolveMainLeavesReceiverAtSource: migrate -resolve finds the
// source migrated in a and the destination running it (verdict moved);
// by quitSource's look the VMM at the source's socket receives in a and
// says postcopy-broken (another VMM started there that received a
// migration under the same id). It is not quit, and migrate says why
// and exits 0: the guest runs on the destination. Before, it was quit
// and migrate said "the source was told and quit".
func TestResolveMainLeavesReceiverAtSource(t *testing.T) {
	c := newRunCase(t)
	c.src.id, c.dst.id = "a", "a"
	c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	c.src.looked = func(f *fakeVMM) { // after the resolve's query: quitSource's is next
		f.role, f.side = "receive", api.SidePostcopyBroken
	}
	code, stdout, stderr := c.resolveMain(t)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	c.wantNothingAsked(t)
	wantSays(t, stdout, "resolved: the guest runs on the destination", "receives in migration id a", "left alone")
	wantSaysNone(t, stdout+stderr, "told and quit")
	wantNoCommand(t, stdout+stderr, "to a VMM that received the migration")
}

// TestRunLeavesReceiverAtSource: migrate's own run completes migration
// a; by the time it quits the source, the VMM at the source's socket
// receives in a, postcopy-broken. It is not quit, migrate says why, and
// the run succeeds: the guest runs on the destination. Before, it was
// quit.
func TestRunLeavesReceiverAtSource(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(2, engine.StatusCompleted, api.SideMigrated)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	c.src.looked = func(f *fakeVMM) { // the look that saw it done: quitSource's is next
		if f.done {
			f.role, f.side = "receive", api.SidePostcopyBroken
		}
	}
	_, out, err := c.run(context.Background(), t)
	if err != nil {
		t.Errorf("err %v: want the run completed", err)
	}
	if acts := c.src.actIDs(); len(acts) != 0 {
		t.Errorf("the VMM at the source's socket was asked %q, want nothing", acts)
	}
	wantSays(t, out, "receives in migration id", "left alone")
}

// TestResolveAfterResumeOnlyASender: after resolve resumed a
// handover-unknown source of migration a beside a failing destination,
// the VMM at the source's socket runs, in a, but receives in it (a VMM
// started there that received a migration under the same id). It is not
// the source resumed: the resolve ends manual, names the roles, moves
// nothing more (the destination is not cancelled) and prints no
// command. Before, that pair's failure was taken for the destination's
// moving on (TestResolveFailingReplacedAfterResume) and the verdict was
// source: "the guest runs on the source".
func TestResolveAfterResumeOnlyASender(t *testing.T) {
	for _, id := range []string{"a", ""} {
		t.Run(map[string]string{"a": "run", "": "-resolve"}[id], func(t *testing.T) {
			rc := failingCase(t)
			rc.src.looked = func(f *fakeVMM) { // after the first query, before the resume
				f.role = "receive"
			}
			v, text, err := rc.resolveInProcess(t, id, 0)
			if v != verdictManual || err == nil {
				t.Errorf("verdict %d, err %v: want manual, an error", v, err)
			}
			rc.wantAsked(t, "resolve resume a", "")
			wantSays(t, text, `report role "receive" in migration id a`)
			wantNoCommand(t, text, "to a VMM whose part in the migration it cannot tell")
		})
	}
}

// TestResolveUnknownRole: a VMM at one of the job's sockets reports a
// role this migrate does not know (a newer VMM's, or a broken one's) in
// the migration resolved. Nothing is moved, no command is printed, and
// migrate says so plainly, naming that VMM's socket. Before, it said
// the two took part in two migrations ("neither is the other's
// partner"), or beside a VMM in none that the role "is not a source's".
func TestResolveUnknownRole(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
		sock func(c *runCase) string
	}{
		{"at the source's socket beside a receiver", func(c *runCase) {
			c.src.role = "relay"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, func(c *runCase) string { return c.src.sock }},
		{"at the destination's socket beside a sender", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.role = "relay"
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, func(c *runCase) string { return c.dst.sock }},
		{"at the source's socket beside none", func(c *runCase) {
			c.src.role = "relay"
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.inNoMigration()
		}, func(c *runCase) string { return c.src.sock }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			tc.set(c)
			stderr := c.resolveRefused(t)
			wantSays(t, stderr, "the VMM at "+tc.sock(c)+` reports role "relay", which this migrate does not know`,
				"neither side is moved")
			wantSaysNone(t, stderr, "two different migrations", "the other's partner", "which is not a")
		})
	}
}

// TestResolveMainSaysWhatItTold: migrate -resolve ends with the guest on
// the destination (verdict moved) and says what became of the source:
// "told" only where the resolve told it migrated (a handover-unknown
// source beside a destination that runs); a source that said migrated
// or postcopy-broken itself was told nothing, and migrate says what it
// said. An older source, which would ignore the quit's id, is not quit
// either way (notSent). Before, every one of them was "the source was
// told and quit", or "told, but not quit".
func TestResolveMainSaysWhatItTold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		side  api.Side // the source's, as the resolve finds it
		older bool     // the source's VMM ignores ids (api.IDsHonoured)
		say   string
	}{
		{"handover-unknown, told migrated, quit", api.SideUnknown, false, "the source was told and quit"},
		{"migrated, quit", api.SideMigrated, false, "the source, which said migrated, was quit"},
		{"postcopy-broken, quit", api.SidePostcopyBroken, false, "the source, which said postcopy-broken, was quit"},
		{"handover-unknown, told migrated, older: not quit", api.SideUnknown, true, "the source was told, but not quit"},
		{"migrated, older: not quit", api.SideMigrated, true, "the source, which said migrated, was not quit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			if tc.older { // an older VMM refuses an id in migrate-resolve's acts: a migration without one
				c.src.id, c.dst.id, c.dst.older = "", "", true
			}
			c.src.older = tc.older
			c.src.finishWith(0, engine.StatusCompleted, tc.side)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			code, stdout, _ := c.resolveMain(t)
			if want := map[bool]int{false: 0, true: 1}[tc.older]; code != want {
				t.Errorf("exit %d, want %d", code, want)
			}
			wantSays(t, stdout, "resolved: the guest runs on the destination; "+tc.say+"\n")
		})
	}
}

// TestResolveMainSourceNotHandedOver: migrate -resolve ends with the
// guest on the destination beside a source of this migration that
// said failed; by quitSource's look that source says handover-unknown
// in it (a VMM that did not answer the resolve's look answers so,
// say), or migrating. It is this job's source, not quit since it did
// not say it handed the guest over, and migrate says that, and to
// resolve again, and exits 1: the resolution is not done (the source
// may wait, paused, for a decision), as migrate's own run fails there
// (TestFinishCompletedSourceNotHandedOver). A source that still says
// failed holds no copy that runs or waits: nothing is left to settle,
// exit 0, as in migrate's run. Before, it said that VMM was "not this
// job's source"; then, until the exit's check, it exited 0 beside a
// source handover-unknown or migrating.
func TestResolveMainSourceNotHandedOver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		looked func(f *fakeVMM) // after the resolve's query: quitSource's is next
		code   int
		say    []string // on stdout
		not    []string // not on stdout
	}{
		{"handover-unknown", func(f *fakeVMM) { f.side = api.SideUnknown }, 1,
			[]string{"the VMM at the source's socket says handover-unknown in this migration", "not quit", "migrate -resolve -config"},
			[]string{"not this job's source"}},
		{"migrating", func(f *fakeVMM) { f.done, f.polls = false, -1 }, 1,
			[]string{"the VMM at the source's socket says migrating in this migration", "not quit", "migrate -resolve -config"},
			[]string{"not this job's source"}},
		{"failed", func(*fakeVMM) {}, 0,
			[]string{"the source says failed in this migration", "not quit"},
			[]string{"not this job's source", "migrate -resolve -config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.src.looked = tc.looked
			code, stdout, stderr := c.resolveMain(t)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			c.wantNothingAsked(t)
			wantSays(t, stdout, tc.say...)
			wantSaysNone(t, stdout, tc.not...)
			if tc.code != 0 {
				wantSays(t, stderr, "migrate: not done: the source "+c.src.sock+" says "+tc.name)
			}
		})
	}
}

// TestResolveAfterResumeWrongRoleSaid: after resolve resumed a
// handover-unknown source of migration a beside a failing destination,
// the VMM at the destination's socket names a too, but sends in it (a
// VMM started there that sent a migration under the same id), and
// still migrates. It is not this job's destination: left alone, the
// guest runs on the source. migrate says it names this migration in
// the wrong role, and prints no -resolve of this job for it (which
// would refuse that pair). Before, it said that VMM "takes part in
// another migration (id a", the id of the migration resolved, and to
// resolve it with this job if that was an earlier run.
func TestResolveAfterResumeWrongRoleSaid(t *testing.T) {
	for _, id := range []string{"a", ""} {
		t.Run(map[string]string{"a": "run", "": "-resolve"}[id], func(t *testing.T) {
			rc := failingCase(t)
			rc.dst.looked = func(f *fakeVMM) { // after the first query
				f.role, f.progress.Handover = "send", engine.HandoverLive
			}
			v, text, err := rc.resolveInProcess(t, id, 0)
			if v != verdictSource || err != nil {
				t.Errorf("verdict %d, err %v: want source", v, err)
			}
			rc.wantAsked(t, "resolve resume a", "")
			wantSays(t, text, "the VMM at "+rc.dst.sock+` reports role "send" in migration id a`, "left alone")
			wantSaysNone(t, text, "another migration", "migrate -resolve -config")
		})
	}
}
