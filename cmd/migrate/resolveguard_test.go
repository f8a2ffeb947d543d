package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestStaleStep checks every plan against every pair of the resolver's
// flags: a plan is refused exactly when one of its steps would run the
// side whose copy the flags call older (a resume of the source after
// the guest ran on the destination, of the destination after the source
// ran it), or give up the side whose copy they call newer (the
// destination's discard after it ran the guest, the source's migrated
// after it ran it). The rows below name the plans that meet each flag.
func TestStaleStep(t *testing.T) {
	sides := []api.Side{api.SideNone, api.SideMigrating, api.SideRunning, api.SideUnknown,
		api.SideMigrated, api.SideDiscarded, api.SideFailed, api.SidePostcopyBroken, sideUnreachable, sideFailing}
	type flags struct{ sourceRan, dstRan bool }
	refused := map[flags]map[[2]api.Side]bool{}
	for _, f := range []flags{{false, false}, {true, false}, {false, true}, {true, true}} {
		refused[f] = map[[2]api.Side]bool{}
		for _, s := range sides {
			for _, d := range sides {
				steps, _ := plan(s, d)
				runsOlder, givesUpNewer := false, false
				for _, st := range steps {
					switch st.action {
					case api.ResolveResume:
						runsOlder = runsOlder || st.src && f.dstRan || !st.src && f.sourceRan
					case api.ResolveDiscard:
						givesUpNewer = givesUpNewer || f.dstRan
					case api.ResolveMigrated:
						givesUpNewer = givesUpNewer || f.sourceRan
					}
				}
				err := staleStep(steps, f.sourceRan, f.dstRan)
				if (err != nil) != (runsOlder || givesUpNewer) {
					t.Errorf("%s/%s, sourceRan %v, dstRan %v: plan %v, refusal %v", s, d, f.sourceRan, f.dstRan, steps, err)
				}
				if err != nil {
					refused[f][[2]api.Side{s, d}] = true
				}
			}
		}
	}
	for _, c := range []struct {
		f    flags
		want [][2]api.Side // every plan refused beside those flags
	}{
		{flags{false, false}, nil},
		{flags{false, true}, [][2]api.Side{
			{api.SideUnknown, api.SideUnknown},   // discard, resume the source
			{api.SideUnknown, api.SideDiscarded}, // resume the source
			{api.SideUnknown, api.SideFailed},    // resume the source (TestResolveRefusesStaleCopy's first case)
			{api.SideUnknown, sideFailing},       // resume the source, then cancel
			{api.SideRunning, api.SideUnknown},   // discard
		}},
		{flags{true, false}, [][2]api.Side{
			{api.SideUnknown, api.SideRunning},  // the source told migrated
			{api.SideMigrated, api.SideUnknown}, // resume the destination
		}},
	} {
		var got [][2]api.Side
		for _, s := range sides {
			for _, d := range sides {
				if refused[c.f][[2]api.Side{s, d}] {
					got = append(got, [2]api.Side{s, d})
				}
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("sourceRan %v, dstRan %v: refused %v, want %v", c.f.sourceRan, c.f.dstRan, got, c.want)
			continue
		}
		for _, w := range c.want {
			if !refused[c.f][w] {
				t.Errorf("sourceRan %v, dstRan %v: plan(%s, %s) not refused", c.f.sourceRan, c.f.dstRan, w[0], w[1])
			}
		}
	}
}

// afterFirstLook runs to on a fake VMM after its first answered query
// (fakeVMM.looked): the side it reports from the second look on.
func afterFirstLook(to func(f *fakeVMM)) func(f *fakeVMM) {
	looks := 0
	return func(f *fakeVMM) {
		if looks++; looks == 1 {
			to(f)
		}
	}
}

// TestResolveRefusesStaleCopy: a resolve that saw the guest run on this
// migration's destination never resumes the source, nor discards the
// destination, and one that saw the source run it after the migration
// began never resumes the destination, nor tells the source migrated,
// whatever a later look finds: plan decides from the current look alone,
// and its steps are checked against what the resolve saw before any is
// sent (staleStep). Nothing is moved, and migrate says why (manual).
// Found by review: at the first look the source still migrates beside a
// destination that runs the guest (dstRan: wait), at the second the
// source says handover-unknown beside a destination that says failed,
// and plan resumed the source, whose copy is older than what ran on
// the destination: the guest ran twice, in sequence, from diverged
// states. Every case sent the acts of its plan before (before: the
// refused act, and for the discard plan the discard and quit too).
func TestResolveRefusesStaleCopy(t *testing.T) {
	ranThen := func(to func(f *fakeVMM)) func(c *runCase) { // the destination runs the guest, then says to's
		return func(c *runCase) {
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.looked = afterFirstLook(to)
		}
	}
	for _, tc := range []struct {
		name      string
		src       func(c *runCase) // the source's script
		dst       func(c *runCase) // the destination's
		sourceRan bool             // set before the resolve, as run's conclude does after a failed migration
		srcAsked  string           // the acts the source may be asked
		dstAsked  string           // the destination's
		say       string           // the refusal migrate says
	}{
		{name: "destination ran, then failed", // the brief's sequence: a resume of the source
			src: func(c *runCase) { c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) },
			dst: ranThen(func(f *fakeVMM) { f.status, f.side = engine.StatusFailed, api.SideFailed }),
			say: "the source's resume is refused"},
		{name: "destination ran, then discarded",
			src: func(c *runCase) { c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) },
			dst: ranThen(func(f *fakeVMM) { f.side = api.SideDiscarded }),
			say: "the source's resume is refused"},
		{name: "destination ran, then handover-unknown", // the discard comes before the resume: not sent either
			src: func(c *runCase) { c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) },
			dst: ranThen(func(f *fakeVMM) { f.status, f.side = engine.StatusHandoverUnknown, api.SideUnknown }),
			say: "the destination's discard is refused"},
		{name: "destination ran, then failing",
			src: func(c *runCase) { c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) },
			dst: ranThen(func(f *fakeVMM) { f.done, f.polls, f.progress.Handover = false, -1, engine.HandoverFailed }),
			say: "the source's resume is refused"},
		{name: "destination ran, then handover-unknown beside a running source",
			src: func(c *runCase) { c.src.finishWith(1, engine.StatusFailed, api.SideRunning) },
			dst: ranThen(func(f *fakeVMM) { f.status, f.side = engine.StatusHandoverUnknown, api.SideUnknown }),
			say: "the destination's discard is refused"},
		{name: "source ran, then migrated", sourceRan: true,
			src: func(c *runCase) { c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated) },
			dst: func(c *runCase) { c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown) },
			say: "the destination's resume is refused"},
		{name: "source ran, seen by the resolve, then migrated", dstAsked: "migrate-cancel a",
			src: func(c *runCase) {
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
				c.src.looked = afterFirstLook(func(f *fakeVMM) { f.status, f.side = engine.StatusCompleted, api.SideMigrated })
			},
			dst: func(c *runCase) { // migrating, its cancel refused; then handover-unknown
				c.dst.postcopy = true
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusHandoverUnknown, api.SideUnknown })
			},
			say: "the destination's resume is refused"},
		{name: "source ran, then handover-unknown beside a running destination", sourceRan: true,
			src: func(c *runCase) { c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown) },
			dst: func(c *runCase) { c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning) },
			say: "the source's migrated is refused"},
	} {
		for _, id := range []string{"a", ""} {
			t.Run(tc.name+map[string]string{"a": "/run", "": "/-resolve"}[id], func(t *testing.T) {
				c := newRunCase(t)
				c.src.id, c.dst.id = "a", "a"
				tc.src(c)
				tc.dst(c)
				var out strings.Builder
				r := newResolver(fakeJob(c.src, c.dst), &out)
				r.id, r.wait, r.sourceRan = id, 10*time.Second, tc.sourceRan
				v, err := r.resolve()
				t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
				c.wantAsked(t, tc.srcAsked, tc.dstAsked)
				if v != verdictManual || err == nil {
					t.Errorf("verdict %d, err %v: want manual, an error", v, err)
				}
				wantSays(t, out.String(), tc.say, "Nothing more was resumed")
				wantSaysNone(t, out.String(), "migrate: resolved:")
			})
		}
	}
}

// TestResolveStaleRunNotResolved: a plan without steps whose verdict
// names the side running the guest now is not "resolved" when what the
// resolve saw calls that side's copy older: the source running after
// the guest ran on this migration's destination (dstRan), or the
// destination running after the source ran it (sourceRan), beside a
// side that runs no copy now (failed, gone). The guest ran on both
// sides, one after the other, from diverged states (or, beside a source
// that does not answer, may run on both now). Nothing is moved or
// stopped (stopping the running side could lose the only copy that
// runs); the resolve fails, saying so, and -resolve exits 1 without a
// "resolved:" line. Before, the first was verdict source, nil ("resolved:
// the guest runs on the source", exit 0) and the others verdict moved,
// nil; staleStep checked only plans with steps.
func TestResolveStaleRunNotResolved(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func(c *runCase)
		sourceRan bool // set before the resolve, as run's conclude does after a failed migration
		say       string
	}{
		{name: "destination ran, then failed, beside a running source", set: func(c *runCase) {
			c.src.finishWith(1, engine.StatusFailed, api.SideRunning) // migrating at the first look, then running
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.status, f.side = engine.StatusFailed, api.SideFailed })
		}, say: "the source runs the guest, but migrate saw it run on this migration's destination"},
		{name: "source ran, then the destination runs beside a source gone", sourceRan: true, set: func(c *runCase) {
			c.src.kill()
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, say: "the destination runs the guest, but migrate saw the source run it after this migration began"},
		{name: "source ran, then the destination runs beside a failed source", sourceRan: true, set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}, say: "the destination runs the guest, but migrate saw the source run it after this migration began"},
	} {
		for _, id := range []string{"a", ""} {
			if tc.sourceRan && id == "" {
				continue // -resolve starts with no flag
			}
			t.Run(tc.name+map[string]string{"a": "/run", "": "/-resolve"}[id], func(t *testing.T) {
				c := newRunCase(t)
				c.src.id, c.dst.id = "a", "a"
				tc.set(c)
				var out strings.Builder
				r := newResolver(fakeJob(c.src, c.dst), &out)
				r.id, r.wait, r.sourceRan = id, 10*time.Second, tc.sourceRan
				v, err := r.resolve()
				t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
				c.wantNothingAsked(t)
				if v != verdictManual || err == nil {
					t.Fatalf("verdict %d, err %v: want manual, an error", v, err)
				}
				wantSays(t, err.Error(), tc.say, "ran on both sides", "nothing was stopped")
			})
		}
	}
	t.Run("-resolve exits 1", func(t *testing.T) {
		c := newRunCase(t)
		c.src.id, c.dst.id = "a", "a"
		c.src.finishWith(1, engine.StatusFailed, api.SideRunning)
		c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.status, f.side = engine.StatusFailed, api.SideFailed })
		code, stdout, stderr := c.resolveMain(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantSaysNone(t, stdout, "resolved:")
		wantSays(t, stderr, "ran on both sides")
		c.wantNothingAsked(t)
	})
}

// TestStaleRun: a look with nothing to send is refused exactly where
// one side runs the guest while the flags call its copy older, and not
// where both run (verdictBothRun says so) or neither does.
func TestStaleRun(t *testing.T) {
	for _, c := range []struct {
		src, dst          api.Side
		sourceRan, dstRan bool
		refused           bool
	}{
		{api.SideRunning, api.SideFailed, false, true, true},
		{api.SideRunning, api.SideNone, false, true, true},
		{api.SideRunning, sideUnreachable, false, true, true},
		{api.SideRunning, api.SideMigrating, false, true, true},
		{api.SideRunning, api.SideFailed, true, false, false}, // the source ran, and runs: as it should
		{sideUnreachable, api.SideRunning, true, false, true},
		{api.SideFailed, api.SideRunning, true, false, true},
		{api.SideMigrated, api.SideRunning, true, false, true},
		{api.SideMigrated, api.SideRunning, false, true, false}, // handed over, as it should
		{api.SideRunning, api.SideRunning, true, true, false},   // verdictBothRun's
		{api.SideUnknown, api.SideFailed, true, true, false},    // nobody runs it: staleStep's
	} {
		err := staleRun(c.src, c.dst, c.sourceRan, c.dstRan)
		if (err != nil) != c.refused {
			t.Errorf("source %s, destination %s, sourceRan %v, dstRan %v: %v, want refused %v", c.src, c.dst, c.sourceRan, c.dstRan, err, c.refused)
		}
	}
}
