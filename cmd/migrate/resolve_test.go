package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestPlan covers every pair of sides: whatever the plan, at most one
// side ends up running, and the source is moved only after the
// destination (its step comes last).
func TestPlan(t *testing.T) {
	sides := []api.Side{api.SideNone, api.SideMigrating, api.SideRunning, api.SideUnknown,
		api.SideMigrated, api.SideDiscarded, api.SideFailed, api.SidePostcopyBroken, sideUnreachable, sideFailing}
	for _, s := range sides {
		for _, d := range sides {
			steps, v := plan(s, d)
			srcRuns, dstRuns := s == api.SideRunning, d == api.SideRunning
			srcMoved := false
			for _, st := range steps {
				if st.src {
					srcMoved = true
				} else if srcMoved && st.action != actionQuit {
					t.Errorf("%s/%s: the source is moved before the destination: %v", s, d, steps)
				}
				if st.action == actionQuit && (st.src || (d != api.SideUnknown && d != api.SideDiscarded)) {
					t.Errorf("%s/%s: quits a side that may hold the guest: %v", s, d, steps)
				}
				if st.action == api.ResolveResume {
					if st.src {
						srcRuns = true
					} else {
						dstRuns = true
					}
				}
				if st.action == api.ResolveDiscard {
					dstRuns = false
				}
			}
			if srcRuns && dstRuns && v != verdictBothRun {
				t.Errorf("%s/%s: plan %v (%d) leaves both running", s, d, steps, v)
			}
			// An unreachable side is never guessed about, nor one beside a
			// source that failed and did not run the guest after the pause
			// (its destination may hold the only copy): only its partner
			// already running (or nothing) is acceptable.
			if (s == sideUnreachable || s == api.SideNone || s == api.SideFailed || d == sideUnreachable) && len(steps) > 0 {
				t.Errorf("%s/%s: plan %v moves a side while the other cannot be asked", s, d, steps)
			}
			// A cancel goes only to a destination that never runs the
			// guest by then: one still migrating beside a running source,
			// or a failing one, and only once the source runs (the steps
			// resume it first; the loop asks again before it cancels).
			// Never a migrating one beside a source that does not run: it
			// may still act on COMMIT, or hold the only copy.
			if v == verdictCancelDst {
				resumesSrc := len(steps) == 1 && steps[0] == step{true, api.ResolveResume}
				if !(s == api.SideRunning && len(steps) == 0 && (d == api.SideMigrating || d == sideFailing)) &&
					!(resumesSrc && d == sideFailing) {
					t.Errorf("%s/%s: plan %v cancels the destination beside a source that does not run", s, d, steps)
				}
			}
		}
	}
	for _, c := range []struct {
		s, d api.Side
		want verdict
		n    int
	}{
		{api.SideUnknown, api.SideRunning, verdictMoved, 1},
		{api.SideUnknown, api.SideUnknown, verdictSource, 3},
		{api.SideUnknown, api.SideDiscarded, verdictSource, 2},
		{api.SideUnknown, sideUnreachable, verdictManual, 0},
		{api.SideRunning, api.SideUnknown, verdictSource, 2},
		{api.SideRunning, api.SideMigrating, verdictCancelDst, 0},
		{api.SideMigrated, api.SideUnknown, verdictMoved, 1},
		{sideUnreachable, api.SideUnknown, verdictManual, 0},
		{api.SideNone, api.SideUnknown, verdictManual, 0},
		{api.SideNone, api.SideMigrating, verdictWait, 0},    // never cancelled: it may hold the only copy
		{sideUnreachable, api.SideMigrating, verdictWait, 0}, // (TestRunSourceDiesAfterLoaded)
		{api.SideFailed, api.SideUnknown, verdictManual, 0},  // a source stopped before its resume (vmm sideAfter)
		{api.SideFailed, api.SideMigrating, verdictWait, 0},
		{api.SideFailed, api.SideRunning, verdictMoved, 0},
		{api.SidePostcopyBroken, api.SideRunning, verdictMoved, 0},  // its post-copy completed there
		{api.SidePostcopyBroken, api.SideMigrating, verdictWait, 0}, // it may complete (resolver.pcWait)
		{api.SideRunning, api.SidePostcopyBroken, verdictLost, 0},
		{api.SidePostcopyBroken, sideUnreachable, verdictLost, 0},
		{sideUnreachable, api.SidePostcopyBroken, verdictLost, 0},
		{api.SideFailed, sideUnreachable, verdictManual, 0}, // it may hold the only copy (TestUnreachableDestinationIsNotEmpty)
		{api.SideNone, sideUnreachable, verdictManual, 0},
		{sideUnreachable, sideUnreachable, verdictManual, 0},
		{api.SideFailed, api.SideNone, verdictIdle, 0},
		// A destination still telling its source it failed never runs
		// the guest (dstSide): as failed, but cancelled beside a running
		// source (its linger ends at once), also beside a handover-unknown
		// one once its resume is done (the loop asks again, sees it
		// running, cancels), and waited for beside a migrating one.
		{api.SideUnknown, sideFailing, verdictCancelDst, 1},
		{api.SideUnknown, api.SideFailed, verdictSource, 1},
		{api.SideRunning, sideFailing, verdictCancelDst, 0},
		{api.SideMigrating, sideFailing, verdictWait, 0},
		{sideUnreachable, sideFailing, verdictIdle, 0},
		{api.SideNone, sideFailing, verdictIdle, 0},
		{api.SideFailed, sideFailing, verdictIdle, 0},
	} {
		if steps, v := plan(c.s, c.d); v != c.want || len(steps) != c.n {
			t.Errorf("plan(%s, %s) = %v, %d; want verdict %d with %d steps", c.s, c.d, steps, v, c.want, c.n)
		}
	}
}

// TestPostcopyWaitCoversStall: beside a source whose post-copy broke,
// migrate waits for a destination still in post-copy through its
// reconnect_timeout, stall_timeout and 30 s, then the engine's
// TellBound: a destination whose post-copy ended listens to tell its
// source how, and reads as migrating meanwhile. With the defaults, 17
// minutes: 11 before the SETTLED and BROKEN lingers covered the source's
// doubled answer wait (2026-12-07), when migrate could call the guest
// lost while the destination, still telling, ran it. Until stall_timeout
// was a job setting the linger was taken as a fixed minute.
func TestPostcopyWaitCoversStall(t *testing.T) {
	for _, c := range []struct {
		l    job.Limits
		want time.Duration
	}{
		// 10 min + 30 s + 30 s, then 5 s (SETTLED's send) + 5 s (its
		// answer) + 15 s + max(30 s, 5 s << 6) + 15 s.
		{job.Limits{}, 17 * time.Minute},
		{job.Limits{ReconnectTimeout: job.DefaultReconnectTimeout, StallTimeout: job.DefaultStallTimeout}, 17 * time.Minute},
		{job.Limits{ReconnectTimeout: 10 * time.Minute, StallTimeout: 5 * time.Minute}, 21*time.Minute + 30*time.Second},
		// The listen is capped by reconnect_timeout.
		{job.Limits{ReconnectTimeout: time.Minute, StallTimeout: 2 * time.Second}, 2*time.Minute + 42*time.Second},
	} {
		got := newResolver(&job.Job{Limits: c.l}, io.Discard).pcWait
		if got != c.want {
			t.Errorf("reconnect_timeout %v, stall_timeout %v: waits %v, want %v", c.l.ReconnectTimeout, c.l.StallTimeout, got, c.want)
		}
		o := engine.Options{ReconnectTimeout: c.l.ReconnectTimeout, StallTimeout: c.l.StallTimeout}
		if reconnect := cmp.Or(c.l.ReconnectTimeout, engine.DefaultReconnectTimeout); got < reconnect+engine.TellBound(o) {
			t.Errorf("reconnect_timeout %v: waits %v, less than reconnect_timeout and the engine's TellBound %v", reconnect, got, engine.TellBound(o))
		}
	}
}

// TestManualOnlyForPartners: the steps migrate prints when it cannot
// resolve tie a resume to the other side of the same migration only.
// Found by audit: migrate run for job A followed a migration its source
// already sent (id b, started by job B's migrate, to B's destination)
// and, its handover unknown beside A's destination that does not answer
// (never started), printed "Only if the destination host is gone for
// good and the guest never ran there, run the source". A's destination
// is gone and never ran the guest, so the text sends the operator to
// resume the source while B's destination may run the guest (RUNNING
// lost): twice. The same when the VMM at the destination's socket takes
// part in another migration (its resume line spoke of a source that is
// not its partner), and when migrate -resolve finds two VMMs of two
// migrations.
func TestManualOnlyForPartners(t *testing.T) {
	resumeOf := func(sock string) string { return `}}' | socat - ` + socatUnix(sock) } // any migration
	resumeB := func(sock string) string { return `"resume","id":"b"}}' | socat - ` + socatUnix(sock) }
	for _, c := range []struct {
		name string
		set  func(c *runCase)
		// follow: migrate -config (following the source's migration);
		// else migrate -resolve.
		follow bool
		srcOK  bool // the source's resume line may be printed (naming the migration)
		dstOK  bool // the destination's resume line may be printed (naming the migration)
	}{
		{name: "followed, destination unreachable", follow: true, srcOK: true, dstOK: true, set: func(c *runCase) {
			c.src.running, c.src.id = true, "b"
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.kill()
		}},
		{name: "followed, destination in another migration", follow: true, srcOK: true, set: func(c *runCase) {
			c.src.running, c.src.id, c.dst.id = true, "b", "c"
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}},
		{name: "resolve, two migrations", set: func(c *runCase) {
			c.src.id, c.dst.id = "a", "c"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}},
		{name: "resolve, destination unreachable", srcOK: true, dstOK: true, set: func(c *runCase) {
			c.src.id = "b"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.kill()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := newRunCase(t)
			c.set(rc)
			var out string
			if c.follow {
				_, out, _ = rc.run(context.Background(), t)
			} else {
				var o, e strings.Builder
				realMain([]string{"-resolve", "-config", rc.writeJob(t)}, &o, &e)
				out = o.String() + e.String()
				t.Log(out)
			}
			if r := rc.resolutions(); len(r) != 0 {
				t.Errorf("moved %v", r)
			}
			if strings.Contains(out, "the destination host is gone for good") {
				t.Errorf("ties the source's resume to this job's destination, which never took its migration:\n%s", out)
			}
			if !c.srcOK && strings.Contains(out, resumeOf(rc.src.sock)) {
				t.Errorf("says how to resume a source beside a destination of another migration:\n%s", out)
			}
			if c.srcOK && strings.Contains(out, resumeOf(rc.src.sock)) && (!strings.Contains(out, "received migration b") || !strings.Contains(out, resumeB(rc.src.sock))) {
				t.Errorf("the source's resume line does not name the migration whose destination must be gone:\n%s", out)
			}
			if !c.dstOK && strings.Contains(out, resumeOf(rc.dst.sock)) {
				t.Errorf("says how to resume a destination beside a source of another migration:\n%s", out)
			}
			if c.dstOK && strings.Contains(out, resumeOf(rc.dst.sock)) && (!strings.Contains(out, "the source of migration b is gone") || !strings.Contains(out, resumeB(rc.dst.sock))) {
				t.Errorf("the destination's resume line does not name the migration whose source must be gone:\n%s", out)
			}
		})
	}
}

// TestManualNeverResumesSourceAfterDestinationRan: when migrate saw the
// guest run on the destination of this migration (it said running, or
// the source said it handed the guest over), the steps it prints when
// it cannot finish never offer the source's resume: the source's copy
// is older than what ran there, and resuming it would run the guest
// twice, or, once the destination is gone, run a stale copy. Found
// reviewing the audit's manual(): beside a destination that runs the
// guest, a source whose "migrated" failed was offered "Only if the
// destination host is gone for good and the guest never ran there, run
// the source", a condition migrate knew to be false; beside a source
// that said migrated, it offered the same resume, which that source
// refuses.
func TestManualNeverResumesSourceAfterDestinationRan(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(c *runCase)
	}{
		{"destination runs, the source's migrated fails", func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagA // a HELLO led both here: both report its fingerprint
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.refuseActions = true
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}},
		{"source migrated, destination unreachable", func(c *runCase) {
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.kill()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := newRunCase(t)
			c.set(rc)
			var o, e strings.Builder
			code := realMain([]string{"-resolve", "-config", rc.writeJob(t)}, &o, &e)
			out := o.String() + e.String()
			t.Logf("exit %d\n%s", code, out)
			if code == 0 {
				t.Fatal("resolved")
			}
			if strings.Contains(out, socatUnix(rc.src.sock)) {
				t.Errorf("offers the source's resume after the guest ran on the destination:\n%s", out)
			}
			if !strings.Contains(out, "Never run the source") {
				t.Errorf("does not say the source's copy is older:\n%s", out)
			}
		})
	}
}

// TestUnreachableDestinationIsNotEmpty: a destination that does not
// answer may hold the guest (loaded, handover-unknown), and beside a
// source that said failed (its VM stopped before it could resume the
// guest) it may hold the only copy. Found reviewing the manual steps
// against every plan row: plan took an unreachable destination for one
// that holds nothing (idle), so migrate -resolve said "resolved: the
// guest runs on the source" and exited 0 beside a source that runs
// nothing, migrate run printed no step at all, and with both sides
// unreachable it said "the destination holds no guest". Such a pair is
// now manual: nothing moves, and the steps say how to run the
// destination once it answers. Beside a source that failed and a
// destination that holds nothing, -resolve no longer says the guest
// runs on the source either.
func TestUnreachableDestinationIsNotEmpty(t *testing.T) {
	for _, c := range []struct {
		name      string
		set       func(c *runCase)
		follow    bool // migrate -config, else migrate -resolve
		resumeDst bool // the destination's resume line must be printed
		fails     bool
	}{
		{name: "resolve, source failed", resumeDst: true, fails: true, set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.dst.kill()
		}},
		{name: "run, source failed", follow: true, resumeDst: true, fails: true, set: func(c *runCase) {
			c.src.finishWith(2, engine.StatusFailed, api.SideFailed)
			go func() { c.src.waitStatuses(2); c.dst.kill() }()
		}},
		{name: "resolve, both unreachable", fails: true, set: func(c *runCase) {
			c.src.kill()
			c.dst.kill()
		}},
		{name: "resolve, source failed, destination holds nothing", set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.dst.finishWith(0, "", api.SideNone)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := newRunCase(t)
			c.set(rc)
			var out string
			code := 0
			if c.follow {
				var err error
				_, out, err = rc.run(context.Background(), t)
				if err != nil {
					code = 1
				}
			} else {
				var o, e strings.Builder
				code = realMain([]string{"-resolve", "-config", rc.writeJob(t)}, &o, &e)
				out = o.String() + e.String()
				t.Logf("exit %d\n%s", code, out)
			}
			if r := rc.resolutions(); len(r) != 0 {
				t.Errorf("moved %v", r)
			}
			if (code != 0) != c.fails {
				t.Errorf("exit %d, want failure: %v", code, c.fails)
			}
			if strings.Contains(out, "runs on the source") || strings.Contains(out, "holds no guest") {
				t.Errorf("says where the guest is, or is not, beside a destination it could not ask or a source that runs nothing:\n%s", out)
			}
			if c.resumeDst && !strings.Contains(out, socatUnix(rc.dst.sock)) {
				t.Errorf("does not say how to run the destination once it answers:\n%s", out)
			}
		})
	}
}

// Tag fingerprints as two id-less migrations report them (engine
// fingerprint.go): tagA the source's, tagB a stranger's.
const (
	tagA = "0a0a0a0a0a0a0a0a"
	tagB = "0b0b0b0b0b0b0b0b"
)

// TestResolvePairsByTag: migrate -resolve pairs two sides that report
// no id (migrations started by hand on the control sockets) only when
// they report the same tag fingerprint, which the source's HELLO
// carried to the destination that took it. Found in the last closing
// note: it paired any two id-less sides, so a VMM started anew at the
// destination's socket that ran an id-less migration of its own was
// taken for the partner of a handover-unknown source: running, the
// source was marked migrated and quit (its guest lost if its real
// destination died); failed or failing, the source was resumed on a
// stranger's word (twice running if its real destination runs it).
// Beside a VMM older than api.TagsReported, which reports no
// fingerprint, the pairing stays as before, and migrate says so.
func TestResolvePairsByTag(t *testing.T) {
	failing := func(f *fakeVMM) { // still telling its source it failed
		f.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
	}
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		moves    []string // the resolution calls, in order
		ok       bool     // exits 0
		say, not string   // in what migrate prints ("": nothing asked)
	}{
		{name: "running stranger, another fingerprint", set: func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagB
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, say: "source id (no id), tag fingerprint " + tagA + "; destination id (no id), tag fingerprint " + tagB},
		{name: "failed stranger, another fingerprint", set: func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagB
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, say: "both without an id"},
		{name: "failed stranger that took no HELLO", set: func(c *runCase) {
			c.src.tag = tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, say: "no tag fingerprint: it sent or took no HELLO"},
		{name: "failing stranger, another fingerprint", set: func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagB
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			failing(c.dst)
		}, say: "both without an id"},
		{name: "its destination runs", set: func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, moves: []string{"send resolve migrated", "send quit"}, ok: true, not: "paired by the absence"},
		{name: "its destination failed", set: func(c *runCase) {
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, moves: []string{"send resolve resume"}, ok: true, not: "paired by the absence"},
		{name: "older destination", set: func(c *runCase) {
			c.src.tag, c.dst.controlV = tagA, 1
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, moves: []string{"send resolve migrated", "send quit"}, ok: true,
			say: "paired by the absence of an id: a VMM older than control version 2 cannot tell two hand-started migrations apart"},
		{name: "older sides", set: func(c *runCase) {
			c.src.controlV, c.dst.controlV = 1, 1
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, moves: []string{"send resolve resume"}, ok: true, say: "paired by the absence of an id"},
		{name: "older source, its destination runs", set: func(c *runCase) {
			c.src.controlV, c.dst.tag = 1, tagB
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, moves: []string{"send resolve migrated", "send quit"}, ok: true, say: "paired by the absence of an id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			var out, errb strings.Builder
			code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
			text := out.String() + errb.String()
			t.Logf("exit %d, calls %s\n%s", code, c.callList(), text)
			if got := c.resolutions(); strings.Join(got, ",") != strings.Join(tc.moves, ",") {
				t.Errorf("resolution calls %q, want %q", got, tc.moves)
			}
			if len(c.dst.actIDs()) != 0 && tc.moves == nil {
				t.Errorf("the destination was acted on: %q", c.dst.actIDs())
			}
			if (code == 0) != tc.ok {
				t.Errorf("exit %d, want success %v", code, tc.ok)
			}
			if !strings.Contains(text, tc.say) || tc.not != "" && strings.Contains(text, tc.not) {
				t.Errorf("migrate does not say %q, or says %q", tc.say, tc.not)
			}
			if strings.Count(text, "paired by the absence") > 1 {
				t.Error("the older pairing is said more than once")
			}
		})
	}
}

// TestTagsPair covers every branch of the id-less pairing: equal
// fingerprints (two empty ones too: neither side sent or took a HELLO)
// pair; beside a source still migrating, a side without one pairs
// while the destination migrates or failed (the source's HELLO may be
// on the way, or its VMM not report it yet: plan waits); any other
// difference,
// and a malformed fingerprint, is two migrations; a VMM older than
// api.TagsReported pairs as before, said older.
func TestTagsPair(t *testing.T) {
	side := func(control uint16, sd api.Side, tag string) api.ResolveResult {
		return api.ResolveResult{Role: "x", Side: sd, Control: control, TagFingerprint: tag}
	}
	v := api.ControlVersion
	for _, c := range []struct {
		s, d   api.ResolveResult
		older  bool
		paired bool
	}{
		{side(v, api.SideUnknown, tagA), side(v, api.SideRunning, tagA), false, true},
		{side(v, api.SideUnknown, tagA), side(v, api.SideRunning, tagB), false, false},
		{side(v, api.SideUnknown, tagA), side(v, api.SideFailed, ""), false, false},
		{side(v, api.SideUnknown, tagA), side(v, api.SideMigrating, ""), false, false},
		{side(v, api.SideRunning, ""), side(v, api.SideMigrating, ""), false, true},
		{side(v, api.SideMigrating, tagA), side(v, api.SideMigrating, ""), false, true},
		{side(v, api.SideMigrating, ""), side(v, api.SideMigrating, tagB), false, true},
		{side(v, api.SideMigrating, ""), side(v, api.SideFailed, tagB), false, true},
		{side(v, api.SideMigrating, tagA), side(v, api.SideMigrating, tagB), false, false},
		{side(v, api.SideMigrating, ""), side(v, api.SideRunning, tagB), false, false},
		{side(v, api.SideMigrating, ""), side(v, api.SideUnknown, tagB), false, false},
		{side(v, api.SideRunning, ""), side(v, api.SideUnknown, tagB), false, false},
		{side(v, api.SideUnknown, "0A0A0A0A0A0A0A0A"), side(v, api.SideRunning, "0A0A0A0A0A0A0A0A"), false, false},
		{side(v, api.SideUnknown, tagA+"\n"), side(v, api.SideRunning, tagA+"\n"), false, false},
		{side(1, api.SideUnknown, ""), side(v, api.SideRunning, tagB), true, true},
		{side(v, api.SideUnknown, tagA), side(0, api.SideFailed, ""), true, true},
	} {
		older, err := tagsPair(c.s, c.d)
		if older != c.older || (err == nil) != c.paired {
			t.Errorf("tagsPair(%+v, %+v) = %v, %v; want older %v, paired %v", c.s, c.d, older, err, c.older, c.paired)
		}
	}
	// A VMM's answer is printed bounded: at most 20 runes of a
	// malformed fingerprint, quoted.
	long := strings.Repeat("\n", 1<<16)
	if _, err := tagsPair(side(v, api.SideUnknown, long), side(v, api.SideRunning, tagA)); err == nil || len(err.Error()) > 300 ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("a malformed fingerprint of %d bytes: %d bytes of error, or a raw newline: %.300q", len(long), len(fmt.Sprint(err)), err)
	}
}

// TestResolveMainQuitsOnlyItsSourceByTag: TestResolveMainQuitsOnlyItsSource
// for migrations without an id: once the guest runs on the destination
// (tag fingerprint tagA), a VMM that answers at the source's socket by
// the quit with another id-less migration (tagB, migrated too) is left
// alone; before, quitSource took any id-less source for this one's.
func TestResolveMainQuitsOnlyItsSourceByTag(t *testing.T) {
	c := newRunCase(t)
	c.src.tag, c.dst.tag = tagA, tagA
	c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	c.src.looked = func(f *fakeVMM) { f.tag = tagB } // after the resolve's look
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
	if acts := c.src.actIDs(); len(acts) != 0 {
		t.Fatalf("source acts %q: want the VMM of migration %s left alone", acts, tagB)
	}
	if code != 0 || !strings.Contains(out.String(), "not this job's source: left alone") {
		t.Errorf("exit %d, output %q: want the guest said to run on the destination, the source's socket left alone", code, out.String())
	}
}

// TestResolveWaitsForSourceFingerprint: a source whose VMM reports no
// tag fingerprint yet, beside a destination that took its HELLO, is
// its partner's source still migrating: migrate -resolve waits for it,
// as before control version 2, and resolves the handover once it ends.
// A real source reports its fingerprint only from its first progress
// after HELLO (its bulk phase's: after READY, the dirty log's start and
// its first sync) or its end, while the destination reports it from the
// HELLO it took; and the resolver asks the source first. Before, the
// pair was taken for two migrations: nothing moved, migrate exited 1
// saying to resume neither side by hand.
func TestResolveWaitsForSourceFingerprint(t *testing.T) {
	c := newRunCase(t)
	c.dst.tag = tagA
	c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) // migrating at the first look
	c.src.looked = func(f *fakeVMM) { f.tag = tagA }                   // its bulk phase's progress, then its report
	c.dst.finishWith(1, engine.StatusCompleted, api.SideRunning)
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
	text := out.String() + errb.String()
	t.Logf("exit %d, calls %s\n%s", code, c.callList(), text)
	if got, want := c.resolutions(), []string{"send resolve migrated", "send quit"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("resolution calls %q, want %q", got, want)
	}
	if code != 0 || strings.Contains(text, "different migrations") {
		t.Errorf("exit %d: want 0, the two sides of one migration paired", code)
	}
}

// tagAct is how a fake VMM records an act on the migration without an
// id that it names by fingerprint tag ("": none), as otherID does.
func tagAct(cmd, tag string) string {
	if tag == "" {
		return cmd + " "
	}
	return cmd + "  tag " + tag
}

// TestResolveNamesTag: migrate -resolve names, in every act on two
// sides without an id (the resolve steps, the cancel of a destination
// beside a running source, the quit of a discarded destination and of
// a source that handed the guest over), the tag fingerprint it paired
// them by, to a VMM of control version api.TagsHonoured or later, and
// to an older one nothing: that one's strict decoder would refuse the
// field by name (the fake does too), and it acts as before. Found by
// review: the acts named no migration, so the fingerprint was checked
// when migrate looked, not when it acted.
func TestResolveNamesTag(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		src, dst []string // each side's acts, by command, naming tagA or nothing
	}{
		{"both handover-unknown", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, []string{"resolve resume"}, []string{"resolve discard", "quit"}},
		{"destination runs", func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, []string{"resolve migrated", "quit"}, nil},
		{"source migrated", func(c *runCase) {
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, []string{"quit"}, []string{"resolve resume"}},
		{"destination migrating beside a running source", func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
		}, nil, []string{"migrate-cancel"}},
	} {
		for _, v := range []struct {
			name     string
			src, dst uint16 // control versions
		}{
			{"v3", api.TagsHonoured, api.TagsHonoured},
			{"v2", api.TagsHonoured - 1, api.TagsHonoured - 1},
			{"v2 source", api.TagsHonoured - 1, api.TagsHonoured},
			{"v2 destination", api.TagsHonoured, api.TagsHonoured - 1},
		} {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				c := newRunCase(t)
				c.src.tag, c.dst.tag = tagA, tagA
				c.src.controlV, c.dst.controlV = v.src, v.dst
				tc.set(c)
				var out, errb strings.Builder
				code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
				t.Logf("exit %d, calls %s\n%s%s", code, c.callList(), out.String(), errb.String())
				if code != 0 {
					t.Errorf("exit %d, want 0", code)
				}
				for i, f := range []*fakeVMM{c.src, c.dst} {
					cmds, control := [][]string{tc.src, tc.dst}[i], []uint16{v.src, v.dst}[i]
					var want []string
					for _, cmd := range cmds {
						want = append(want, tagAct(cmd, map[bool]string{true: tagA}[control >= api.TagsHonoured]))
					}
					if got := f.actIDs(); strings.Join(got, ",") != strings.Join(want, ",") {
						t.Errorf("%s (control version %d) was asked %q, want %q", f.role, control, got, want)
					}
				}
			})
		}
	}
}

// TestResolveMovedOn: a resolve acts only on the migration it looked at.
// Each act names what the last query found on that side: the id, and
// for two sides without one the tag fingerprint (control version 3). A
// VMM that holds another migration by the time of the act (its VMM
// restarted and took another run's migration, a slow migrate acts after
// the VMM moved on, or it ended the id-less migration tagA and began
// another, tagB or one that reports no fingerprint yet) refuses it and
// changes nothing; migrate takes no further step, and its verdict is the
// same whichever way the migration was named. Found by audit: the acts
// named no id and took on whatever the VMM held; until control version
// 3 the acts on two id-less sides named no migration either.
func TestResolveMovedOn(t *testing.T) {
	movesOn := func(to func(f *fakeVMM)) func(after int) func(f *fakeVMM) {
		return func(after int) func(f *fakeVMM) { // after that many looks the VMM holds another migration
			looks := 0
			return func(f *fakeVMM) {
				if looks++; looks == after {
					to(f)
				}
			}
		}
	}
	namings := []struct {
		name    string
		set     func(c *runCase)                 // both sides in one migration
		movesOn func(after int) func(f *fakeVMM) // to another migration
		act     func(cmd string) string          // an act naming the migration looked at, as the fake records it
		refused string                           // what migrate prints of a refused resolve
	}{
		{"by id", func(c *runCase) { c.src.id, c.dst.id = "a", "a" }, movesOn(func(f *fakeVMM) { f.id = "b" }),
			func(cmd string) string { return cmd + " a" }, `holds migration "b"`},
		{"by tag", func(c *runCase) { c.src.tag, c.dst.tag = tagA, tagA }, movesOn(func(f *fakeVMM) { f.tag = tagB }),
			func(cmd string) string { return tagAct(cmd, tagA) }, "with tag fingerprint " + tagA + " refused"},
		{"by tag, to one not fingerprinted yet", func(c *runCase) { c.src.tag, c.dst.tag = tagA, tagA },
			movesOn(func(f *fakeVMM) { f.tag = "" }), func(cmd string) string { return tagAct(cmd, tagA) },
			"with tag fingerprint " + tagA + " refused"},
	}
	for _, tc := range []struct {
		name     string
		set      func(c *runCase, movesOn func(after int) func(f *fakeVMM))
		src, dst []string // the acts each side was asked for, by command
		ok       bool     // exits 0
		say      string   // in what migrate prints ("": the naming's refusal)
	}{
		{"destination before its discard", func(c *runCase, movesOn func(int) func(*fakeVMM)) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.looked = movesOn(1)
		}, nil, []string{"resolve discard"}, false, ""},
		{"destination before its cancel", func(c *runCase, movesOn func(int) func(*fakeVMM)) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.looked = movesOn(1) // still migrating, another migration
		}, nil, []string{"migrate-cancel"}, false, "different migrations"},
		{"source before its resume", func(c *runCase, movesOn func(int) func(*fakeVMM)) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideDiscarded)
			c.src.looked = movesOn(1)
		}, []string{"resolve resume"}, nil, false, ""},
		{"source before its migrated", func(c *runCase, movesOn func(int) func(*fakeVMM)) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.src.looked = movesOn(1)
		}, []string{"resolve migrated"}, nil, false, ""},
		{"source before its quit", func(c *runCase, movesOn func(int) func(*fakeVMM)) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.src.looked = movesOn(2) // the resolve's query, then quitSource's
		}, []string{"resolve migrated", "quit"}, nil, true, "not this job's source: left alone"},
	} {
		for _, n := range namings {
			t.Run(tc.name+"/"+n.name, func(t *testing.T) {
				c := newRunCase(t)
				n.set(c)
				tc.set(c, n.movesOn)
				var out, errb strings.Builder
				code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
				t.Logf("exit %d, calls %s\n%s%s", code, c.callList(), out.String(), errb.String())
				for i, f := range []*fakeVMM{c.src, c.dst} {
					var want []string
					for _, cmd := range [][]string{tc.src, tc.dst}[i] {
						want = append(want, n.act(cmd))
					}
					if got := strings.Join(f.actIDs(), ","); got != strings.Join(want, ",") {
						t.Errorf("%s was asked %q, want %q", f.role, got, want)
					}
				}
				// Only the acts on the migration looked at, before the VMM moved on, took.
				for _, call := range strings.Split(c.callList(), ",") {
					if call != "send resolve migrated" && (strings.Contains(call, "resolve") || strings.HasSuffix(call, "quit") ||
						strings.Contains(call, "migrate-cancel")) {
						t.Errorf("%q was done, to another migration", call)
					}
				}
				if (code == 0) != tc.ok {
					t.Errorf("exit %d, want success %v", code, tc.ok)
				}
				if say := cmp.Or(tc.say, n.refused); !strings.Contains(out.String()+errb.String(), say) {
					t.Errorf("migrate does not say %q", say)
				}
			})
		}
	}
}

// TestManualNamesTag: the resume lines migrate -resolve prints when it
// cannot resolve two sides without an id name the tag fingerprint the
// side reported, if its VMM honours it (api.TagsHonoured), so that a
// VMM that holds another migration by the time the operator runs the
// line refuses it, as a line naming an id is refused; to an older VMM,
// which would refuse the field by name, no resume is printed (until
// TestPrintedCommandsNamed, one naming nothing), nor for a side that did
// not answer (TestResolveUnreachableNamesNoUnknownID): one naming
// nothing would act on whatever that VMM holds by then; migrate prints
// its migrate-status in its place, to learn what it holds.
func TestManualNamesTag(t *testing.T) {
	named := `"args":{"action":"resume","tag_fingerprint":"` + tagA + `"}}' | socat - `
	status := `{"cmd":"migrate-status"}' | socat - `
	for _, tc := range []struct {
		name    string
		control uint16
		src     bool // the source answers (the destination does not), else the other way round
		want    string
	}{
		{"source answers, v3", api.TagsHonoured, true, named},
		{"destination answers, v3", api.TagsHonoured, false, named},
		{"source answers, v2", api.TagsHonoured - 1, true, status},
		{"destination answers, v2", api.TagsHonoured - 1, false, status},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			live, dead := c.src, c.dst
			if !tc.src {
				live, dead = c.dst, c.src
			}
			live.tag, live.controlV = tagA, tc.control
			live.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			dead.kill()
			var out, errb strings.Builder
			code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
			text := out.String() + errb.String()
			t.Logf("exit %d\n%s", code, text)
			if code == 0 || len(c.resolutions()) != 0 {
				t.Fatalf("exit %d, moved %q: want nothing moved", code, c.resolutions())
			}
			if !strings.Contains(text, tc.want+socatUnix(live.sock)) || strings.Count(text, socatUnix(live.sock)) != 1 {
				t.Errorf("the one line for %s is not %q", live.sock, tc.want)
			}
			if l := commandLine(text, socatUnix(dead.sock)); !strings.Contains(l, `{"cmd":"migrate-status"}`) || strings.Count(text, socatUnix(dead.sock)) != 1 {
				t.Errorf("the line for %s, which did not answer, is %q; want its migrate-status alone, no resume naming nothing", dead.sock, l)
			}
		})
	}
}

// TestLastCancelSaysRefusal: the last cancel of a failing destination
// (once the resolve's wait ran out beside a running source) that its VMM
// refuses, because it holds another migration by then (here: another
// id-less one, by tag fingerprint) or cannot read the act, says what
// the VMM answered and names the migration by its fingerprint. Found by
// review: the refusal was dropped, and migrate said the VMM gave "no
// answer" and that the destination's migration "ends on its own".
func TestLastCancelSaysRefusal(t *testing.T) {
	c := newRunCase(t)
	c.dst.tag = tagB // moved on since the look that found tagA
	var out strings.Builder
	r := newResolver(fakeJob(c.src, c.dst), &out)
	r.dstTag, r.dstControl = tagA, api.TagsHonoured
	r.lastCancel("")
	t.Log(out.String())
	if got := strings.Join(c.dst.actIDs(), ","); got != tagAct("migrate-cancel", tagA) {
		t.Fatalf("destination asked %q, want one cancel naming %s", got, tagA)
	}
	if s := out.String(); strings.Contains(s, "no answer") || !strings.Contains(s, "refused") ||
		!strings.Contains(s, "tag fingerprint "+tagA) {
		t.Errorf("want the VMM's refusal said, and the migration named by its fingerprint")
	}
}
