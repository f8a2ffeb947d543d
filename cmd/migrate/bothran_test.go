package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// seenRunningOnBoth sets c's two fake VMMs so that the resolve after a
// run sees the guest run on both sides of its migration, one look
// after the other, and ends in manual's bothRanText: at its first look
// the source says running (sourceRan) beside a destination still
// migrating, whose cancel is refused (post-copy, so it is asked again at
// once); at its second the source says handover-unknown (a VMM that
// breaks the rule that a source which resumed the guest is never
// handover-unknown again) beside the destination running (dstRan), and
// the source's migrated is refused (staleStep). The source's status
// must say running by the resolve's first look (the run's own end).
func seenRunningOnBoth(c *runCase) {
	c.src.queried = afterFirstLook(func(f *fakeVMM) { f.side = api.SideUnknown })
	c.dst.postcopy = true
	c.dst.queried = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusCompleted, api.SideRunning })
}

// TestBothRanResolvedSaysBoth: a run whose resolve saw the guest run on
// both sides of one migration, and so ended manual with bothRanText
// (the copies diverged; keep one, stop the other), reports it as where
// both were found running at once (TestBothRunResolvedSaysBoth):
// resolved both, and BOTH first in its error, which is what migrate
// prints (the run's own reason after it), exit 1; in every path of a
// run that resolves: after a source that stopped answering, a
// handover-unknown, a failed migration whose source ran, a
// post-copy-broken one, and a migrate-send whose answer Ctrl-C cut.
// Before, each said its own reason alone, with no resolved (the source
// that stopped answering, the failed and the cancelled said status
// failed or cancelled: the guest on the source, JOBS.md) and the
// handover unresolved on stderr only, as "cleaning up" or
// "handover unresolved".
func TestBothRanResolvedSaysBoth(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(t *testing.T, c *runCase) context.Context
		says string // the run's own reason, after BOTH
	}{
		{"the source stopped answering", func(t *testing.T, c *runCase) context.Context {
			c.src.progress = engine.Progress{Phase: engine.PhaseDirty, Pass: 3}
			go func() { // once migrate follows it: its status stops coming back, and it says it runs the guest
				c.src.waitStatuses(3)
				c.src.mu.Lock()
				c.src.statusDown, c.src.done, c.src.status, c.src.side = true, true, engine.StatusFailed, api.SideRunning
				c.src.mu.Unlock()
			}()
			return t.Context()
		}, "the source stopped answering during the migration (dirty, pass 3)"},
		{"handover-unknown", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideRunning)
			c.src.reportErr = "no answer to COMMIT"
			return t.Context()
		}, "no answer to COMMIT"},
		{"failed, the source running", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
			c.src.reportErr = "the destination aborted"
			return t.Context()
		}, "migration failed: the destination aborted (the source keeps running)"},
		{"postcopy-broken", func(t *testing.T, c *runCase) context.Context {
			// Here the source says postcopy-broken first (dstRan), then
			// running (sourceRan) beside the destination handover-unknown,
			// whose discard is refused.
			c.src.finishWith(2, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.src.reportErr = "post-copy: reconnect timed out"
			c.src.queried = afterFirstLook(func(f *fakeVMM) { f.side = api.SideRunning })
			c.dst.queried = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusHandoverUnknown, api.SideUnknown })
			return t.Context()
		}, "migration postcopy-broken: post-copy: reconnect timed out"},
		{"Ctrl-C before migrate-send's answer", func(t *testing.T, c *runCase) context.Context {
			// The source takes its cancel and runs the guest; the
			// destination refuses its own (post-copy).
			c.src.holdSend = make(chan struct{})
			return c.src.interruptWhenSending(t)
		}, "source " + "%SRC%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			seenRunningOnBoth(c)
			ctx := tc.set(t, c)
			rep, out, err := c.run(ctx, t)
			if err == nil {
				t.Fatal("succeeded: want it failed, the guest seen running on both sides")
			}
			wantSays(t, out, "The guest ran on both sides of migration")
			if !strings.HasPrefix(err.Error(), "BOTH the source ("+c.src.sock+") and the destination ("+c.dst.sock+") ran the guest") {
				t.Errorf("migrate says %q; want BOTH ... ran the guest first", err)
			}
			wantSays(t, err.Error(), strings.ReplaceAll(tc.says, "%SRC%", c.src.sock))
			m := reportJSON(t, rep)
			if m["resolved"] != "both" || m["error"] != err.Error() {
				t.Errorf("JSON resolved %v, error %q; want both, with what migrate prints: %q", m["resolved"], m["error"], err.Error())
			}
			var text strings.Builder
			printReport(&text, rep)
			wantSays(t, text.String(), "the guest runs on both sides")
			wantSaysNone(t, out, "cleaning up")
			c.wantResolutions(t) // nothing moved on either side
		})
	}
}

// TestResolveMainBothRanSaysBoth: migrate -resolve whose looks saw the
// guest run on both sides of one migration (bothRanText) fails with
// BOTH first in what it prints as its reason, as where it finds both
// running at once, exit 1, and says no "resolved:". Before, its reason
// was "handover unresolved" alone.
func TestResolveMainBothRanSaysBoth(t *testing.T) {
	c := newRunCase(t)
	c.src.id, c.dst.id = "a", "a"
	c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
	seenRunningOnBoth(c)
	code, stdout, stderr := c.resolveMain(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantSays(t, stderr, "The guest ran on both sides of migration id a",
		"\nmigrate: BOTH the source ("+c.src.sock+") and the destination ("+c.dst.sock+") ran the guest of migration id a")
	wantSaysNone(t, stdout+stderr, "resolved:")
	c.wantResolutions(t)
}

// TestStaleRunResolvedSaysBoth: a run whose migration failed with the
// source running the guest (sourceRan), and whose cleanup then finds
// the destination running it beside a source that no longer answers,
// ends on staleRun's refusal (the destination runs an older copy: the
// guest ran on both sides), not on manual: it is reported as a guest
// seen running on both, resolved both, BOTH first in the error, as
// TestBothRanResolvedSaysBoth's. Before, the report said failed, "the
// source keeps running", no resolved, and staleRun's text was on
// stderr only, as "cleaning up".
func TestStaleRunResolvedSaysBoth(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
	c.src.reportErr = "the destination aborted"
	c.src.resolveDown = true // the resolver's look finds it unreachable
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	rep, out, err := c.run(t.Context(), t)
	if err == nil {
		t.Fatal("succeeded: want it failed, the guest seen running on both sides")
	}
	if !strings.HasPrefix(err.Error(), "BOTH the source ("+c.src.sock+") and the destination ("+c.dst.sock+") ran the guest") {
		t.Errorf("migrate says %q; want BOTH ... ran the guest first", err)
	}
	wantSays(t, err.Error(), "the destination runs an older copy", "migration failed: the destination aborted (the source keeps running)")
	if m := reportJSON(t, rep); m["resolved"] != "both" || m["error"] != err.Error() {
		t.Errorf("JSON resolved %v, error %q; want both, with what migrate prints: %q", m["resolved"], m["error"], err.Error())
	}
	wantSaysNone(t, out, "cleaning up")
	c.wantResolutions(t)
}
