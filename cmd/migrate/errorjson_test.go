package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunJSONErrorIsReason: every run that fails (exit 1) has a report
// whose error is what migrate prints as its reason ("migrate: " and
// run's error, on stderr), the report's own error (the source's, an
// unknown handover's) kept in it: migrate -json says why, and the same
// why. Before, run returned a reason of its own beside the report's
// older error: a failed or cancelled migration's report said the
// source's error without "the source keeps running" (a cancelled one
// none at all), a refused migrate-incoming or migrate-send the control
// call's error without the VMM it was, a handover-unknown resolved to
// the source without that, one whose destination does not answer the
// handover's error while migrate said the handover is unresolved (the
// guest on neither side), and a post-copy-broken one without "the guest
// is lost". The cases that said it already are kept (a source that
// stopped answering, a handover whose destination did not confirm, a
// source already sending without an id).
func TestRunJSONErrorIsReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(t *testing.T, c *runCase) context.Context
		says []string // in the reason, besides what the report said before
	}{
		{"migrate-incoming refused", func(t *testing.T, c *runCase) context.Context {
			c.dst.refuse = true
			return t.Context()
		}, []string{"destination %DST%: ", "a migration (receive) is already running"}},
		{"migrate-send refused", func(t *testing.T, c *runCase) context.Context {
			c.src.refuse = true
			return t.Context()
		}, []string{"source %SRC%: ", "a migration (receive) is already running"}},
		{"failed", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusFailed, api.SideRunning)
			c.src.reportErr = "the destination aborted"
			return t.Context()
		}, []string{"migration failed: the destination aborted (the source keeps running)"}},
		{"cancelled", func(t *testing.T, c *runCase) context.Context {
			return c.src.interruptWhenSending(t)
		}, []string{"migration cancelled", "(the source keeps running)"}},
		{"handover-unknown, resolved to the source", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.reportErr = "no answer to COMMIT"
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			return t.Context()
		}, []string{"migration failed in the handover: no answer to COMMIT (resolved: the guest runs on the source)"}},
		{"handover-unknown, the destination does not answer", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.src.reportErr = "no answer to COMMIT"
			c.dst.resolveDown = true
			return t.Context()
		}, []string{"handover unresolved (source handover-unknown, destination unreachable)", "no answer to COMMIT"}},
		{"postcopy-broken", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.src.reportErr = "post-copy: reconnect timed out"
			c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			return t.Context()
		}, []string{"migration postcopy-broken: post-copy: reconnect timed out (the guest is lost; the source stays paused)"}},
		{"the source stopped answering", func(t *testing.T, c *runCase) context.Context {
			c.src.progress = engine.Progress{Phase: engine.PhaseDirty, Pass: 3}
			go func() {
				c.src.waitStatuses(3)
				c.src.mu.Lock()
				c.src.statusDown, c.src.done, c.src.status, c.src.side = true, true, engine.StatusFailed, api.SideRunning
				c.src.mu.Unlock()
			}()
			return t.Context()
		}, []string{"the source stopped answering during the migration (dirty, pass 3)"}},
		{"completed, the destination does not confirm", func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(2, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
			return t.Context()
		}, []string{"the source handed over, but the destination %DST% does not confirm that it runs the guest"}},
		{"the source already sends a migration without an id", func(t *testing.T, c *runCase) context.Context {
			c.src.running = true
			c.src.progress = engine.Progress{Phase: engine.PhaseBulk}
			return t.Context()
		}, []string{"is already sending a migration that has no id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			ctx := tc.set(t, c)
			rep, _, err := c.run(ctx, t)
			if err == nil {
				t.Fatal("succeeded: want it failed")
			}
			for _, s := range tc.says {
				wantSays(t, err.Error(), strings.NewReplacer("%SRC%", c.src.sock, "%DST%", c.dst.sock).Replace(s))
			}
			m := reportJSON(t, rep)
			if m["error"] != err.Error() {
				t.Errorf("JSON error %q; want what migrate prints: %q", m["error"], err.Error())
			}
			if m["exit"] != 1.0 {
				t.Errorf("JSON exit %v; want 1, migrate's", m["exit"])
			}
		})
	}
}
