package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveCancelRefused: the cancel of a destination beside a running
// source that its VMM does not apply, and says why (it is in post-copy,
// acts on COMMIT, or refuses the act for a reason of its own), is sent
// once: the resolve says what the VMM answered, asks both sides afresh
// and plans from their answers. A destination that then ends is resolved
// as usual (here: failed, the guest runs on the source); one that still
// migrates when the wait runs out is left to the operator with the
// VMM's reason, not with "still migrating"; a failing one is not sent
// its last cancel again, and the reason is said at once: asked afresh
// once, it is left (it never runs the guest), not waited for. Found in the last
// closing note: the loop sent the cancel at every query (every 200 ms)
// until the wait ran out, and only the last cancel of a failing
// destination reported a refusal.
func TestResolveCancelRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(f *fakeVMM) // the destination, migrating "a"
		verdict verdict
		say     []string // in what migrate prints
		asks    int      // queries the destination answers (0: as many as the wait allows)
	}{
		{"post-copy, still migrating", func(f *fakeVMM) { f.postcopy = true }, verdictManual,
			[]string{"post-copy cannot be cancelled", "did not cancel migration id a"}, 0},
		{"refused by error, still migrating", func(f *fakeVMM) { f.cancelRefusal = "bad arguments: a reason of its own" }, verdictManual,
			[]string{"a reason of its own", "did not cancel migration id a"}, 0},
		{"committing, then failed", func(f *fakeVMM) {
			f.committing = true
			f.finishWith(4, engine.StatusFailed, api.SideFailed) // ends failed a few queries later
		}, verdictSource, []string{"COMMIT arrived"}, 0},
		{"failing", func(f *fakeVMM) {
			f.postcopy = true // as a destination whose cancel only ended its linger answers
			f.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
		}, verdictSource, []string{"post-copy cannot be cancelled", "it never runs the guest"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			tc.set(c.dst)
			asks := 0
			c.dst.looked = func(*fakeVMM) { asks++ } // under c.dst.mu
			// A wait of several queries; one cancel goes, naming a.
			v, out, err := c.resolveInProcess(t, "", 1500*time.Millisecond)
			c.wantAsked(t, "", "migrate-cancel a")
			if v != tc.verdict || (err == nil) != (v == verdictSource) {
				t.Errorf("verdict %d, err %v: want %d", v, err, tc.verdict)
			}
			wantSays(t, out+errText(err), tc.say...)
			if v == verdictManual && strings.Contains(errText(err), "a side is still migrating") {
				t.Errorf("the cause is %q, not the VMM's refusal", err)
			}
			c.dst.mu.Lock()
			asked := asks
			c.dst.mu.Unlock()
			if tc.asks != 0 && asked != tc.asks {
				t.Errorf("the destination was asked %d times, want %d: once, and once afresh after the refusal", asked, tc.asks)
			}
			if len(c.resolutions()) != 0 {
				t.Errorf("resolutions %q: want none", c.resolutions())
			}
		})
	}
}

// errText is err's text, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestResolveLeavesUnnamedDestination: beside a running source, a
// destination that reports a migration with neither an id nor a tag
// fingerprint, from a VMM that reports fingerprints (control version 2
// or later), took no HELLO: it holds no copy of this guest, and nothing
// shows it to be this source's partner (two sides without a HELLO pair
// by "" == "", as a stranger waiting at the job's destination socket for
// another source does). A cancel could name nothing there, so it would
// cancel whatever the VMM holds by the time it arrives (another job's
// migration, or one a VMM started anew at the socket took after the
// look). migrate -resolve sends it nothing, says the guest runs on the
// source, prints no cancel to run by hand either (it would name nothing
// too: until TestPrintedCommandsNamed it printed one) but the VMM's
// migrate-status, and exits 1 saying the
// cancel was not done, as for an act not sent to an older VMM: the
// destination's VMM, perhaps this job's, still holds a migration and
// refuses migrate-incoming until it ends. Beside a VMM older than
// control version 2, which cannot say whether it took a HELLO, the
// cancel goes as before (paired by the absence of an id, said), and
// once it took migrate exits 0. Found working out the last closing
// note's question: the cancel went, naming nothing; then (review C) it
// was left with exit 0, as if nothing were left to do.
func TestResolveLeavesUnnamedDestination(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control uint16 // the destination's
		failing bool   // its handover failed (still telling a source)
		cancel  bool   // the cancel is sent (naming nothing)
	}{
		{"v3", api.TagsHonoured, false, false},
		{"v3, failing", api.TagsHonoured, true, false},
		{"v2", api.TagsReported, false, false},
		{"v1", api.TagsReported - 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.controlV = tc.control
			if tc.failing {
				c.dst.progress = engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverFailed}
			}
			code, stdout, stderr := c.resolveMain(t)
			if !strings.Contains(stdout, "resolved: the guest runs on the source") {
				t.Errorf("exit %d: the guest not said to run on the source", code)
			}
			acts := c.dst.actIDs()
			if tc.cancel {
				if code != 0 {
					t.Errorf("exit %d: want 0, the cancel sent", code)
				}
				if len(acts) == 0 || acts[0] != "migrate-cancel " || !strings.Contains(stderr, "paired by the absence of an id") {
					t.Errorf("destination asked %q: want the cancel, as before, said paired by the absence of an id", acts)
				}
				return
			}
			line := controlLine(requestJSON("migrate-status", nil), c.dst.sock)
			if len(acts) != 0 || !strings.Contains(stderr, "no copy of this guest") || !strings.Contains(stderr, "\n    "+line+"\n") ||
				strings.Count(stderr, socatUnix(c.dst.sock)) != 1 {
				t.Errorf("destination asked %q: want nothing sent, why said, and its one line\n    %s", acts, line)
			}
			if code != 1 || !strings.Contains(stderr, "migrate: not done: migrate-cancel not sent to "+c.dst.sock) {
				t.Errorf("exit %d: want 1, the cancel said not done", code)
			}
		})
	}
}

// TestResolveRefusalNotStale: the cancel of a destination beside a
// running source is refused while that destination acts on COMMIT
// ("COMMIT arrived: the guest runs here ..."); asked afresh, it is
// failing (its resume failed here, and it tells its source ABORT). The
// refusal spoke of the destination as it was, not as it is: the failing
// destination is sent its cancel afresh, naming the same migration, and
// what migrate says is that cancel's answer (taken: nothing more to
// say; refused again: its new reason). Before, the resolve kept the
// first refusal, sent the failing destination nothing, and said
// "migrate-cancel of the failing destination ... did not take (its
// VMM: COMMIT arrived: the guest runs here ...)", a reason given for
// another state, which says the guest runs on a destination that
// never runs it.
func TestResolveRefusalNotStale(t *testing.T) {
	for _, tc := range []struct {
		name  string
		again bool // the failing destination refuses its cancel too (its linger ended)
	}{
		{"failing, cancel taken", false},
		{"failing, cancel refused anew", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.committing = true
			c.dst.looked = func(f *fakeVMM) { // under f.mu; from the query after the first cancel on
				if len(f.acts) == 1 {
					f.committing, f.postcopy = false, tc.again
					f.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
				}
			}
			v, out, err := c.resolveInProcess(t, "", 5*time.Second) // a bound only: the resolve ends on the answers
			if v != verdictSource || err != nil {
				t.Errorf("verdict %d, err %v: want source", v, err)
			}
			// The refused cancel, then one afresh for the failing
			// destination, both naming a.
			c.wantAsked(t, "", "migrate-cancel a,migrate-cancel a")
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "did not take") && strings.Contains(l, "COMMIT arrived") {
					t.Errorf("the failing destination's cancel is said refused for a reason given before it failed:\n%s", l)
				}
			}
			if said := strings.Contains(out, "did not take (its VMM: post-copy cannot be cancelled"); said != tc.again {
				t.Errorf("the failing destination's own refusal said: %v, want %v", said, tc.again)
			}
		})
	}
}
