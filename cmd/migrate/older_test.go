package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestOlderVMMNotActed: migrate sends migrate-cancel or quit, naming the
// migration's id, only to a VMM whose last answer reported a control
// version that honours it (api.IDsHonoured). A VMM from before ignores
// the id there and would cancel or quit whatever migration it holds by
// then, perhaps another job's: migrate sends it nothing, prints why and
// the VMM's migrate-status, and fails (exit 1); it prints no line for
// that act either (TestPrintedCommandsNamed: until then, one naming
// nothing, to run by hand). The same cases against
// current VMMs act, naming the id. Found by audit: migrate named the id
// in every act and relied on it, but an older VMM ignored it.
func TestOlderVMMNotActed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resolve bool // migrate -resolve, else a run
		set     func(t *testing.T, c *runCase) context.Context
		older   string // "send" or "receive": the side that is older, and would be acted on
		cmd     string // the act
		say     string // in what migrate prints, current or older ("": nothing more)
	}{
		{"completed: quit of the source", false, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(1, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			return context.Background()
		}, "send", "quit", ""},
		{"interrupted: cancel of the source", false, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(-1, engine.StatusCompleted, api.SideMigrated)
			c.src.doneAfter = 500 * time.Millisecond // it completes after the interrupt
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.older = true // the quit that follows is not sent either
			return c.src.interruptWhenSending(t)
		}, "send", "migrate-cancel", ""},
		{"-resolve: quit of the source", true, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			return nil
		}, "send", "quit", ""},
		{"-resolve: cancel of a destination beside a running source", true, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			return nil // the destination still migrates
		}, "receive", "migrate-cancel", ""},
		{"-resolve: quit of a discarded destination", true, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideDiscarded)
			return nil
		}, "receive", "quit", ""},
		// The source resumed, then the failing destination's cancel:
		// not sent to an older one, and the guest runs on the source all
		// the same (it never runs on a failing destination).
		{"-resolve: cancel of a failing destination after the source's resume", true, func(t *testing.T, c *runCase) context.Context {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(-1, "", "")
			c.dst.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
			return nil
		}, "receive", "migrate-cancel", "resolved: the guest runs on the source"},
	} {
		for _, older := range []bool{false, true} {
			name := tc.name + map[bool]string{false: ", current VMM", true: ", older VMM"}[older]
			t.Run(name, func(t *testing.T) {
				c := newRunCase(t)
				c.src.id, c.dst.id = "a", "a"
				if !tc.resolve {
					c.src.id, c.dst.id = "", "" // migrate-incoming and migrate-send bring migrate's
				}
				ctx := tc.set(t, c)
				f := map[string]*fakeVMM{"send": c.src, "receive": c.dst}[tc.older]
				f.older = f.older || older
				var failed bool
				var out string
				if tc.resolve {
					var stdout, stderr strings.Builder
					code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &stdout, &stderr)
					t.Logf("exit %d\n%s%s", code, stdout.String(), stderr.String())
					failed, out = code != 0, stderr.String()
					if !strings.Contains(stdout.String()+out, tc.say) {
						t.Errorf("migrate does not say %q", tc.say)
					}
				} else {
					_, log, err := c.run(ctx, t)
					failed, out = err != nil && strings.Contains(err.Error(), "not sent"), log
				}
				acted := false
				for _, a := range f.actIDs() {
					acted = acted || strings.HasPrefix(a, tc.cmd+" ")
				}
				if !older {
					if !acted || strings.Contains(out, "not sent") {
						t.Fatalf("current VMM: acts %q; want %s sent, naming the id", f.actIDs(), tc.cmd)
					}
					return
				}
				if acted {
					t.Fatalf("older VMM: acts %q; want no %s sent", f.actIDs(), tc.cmd)
				}
				line := controlLine(requestJSON("migrate-status", nil), f.sock)
				if !failed || !strings.Contains(out, tc.cmd+" not sent to "+f.sock+": the VMM at "+f.sock+" reports no control version") ||
					!strings.Contains(out, line) || strings.Contains(out, `{"cmd":"`+tc.cmd+`"`) {
					t.Fatalf("older VMM: failed %v, output\n%s\nwant a failure that says why %s was not sent, and\n    %s", failed, out, tc.cmd, line)
				}
			})
		}
	}
}

// TestControlVersionBounded: the control version a VMM reports is a
// uint16: an answer with one out of range (negative, or above 65535) is
// malformed, and migrate decodes nothing from it (it acts on nothing).
func TestControlVersionBounded(t *testing.T) {
	for _, raw := range []string{`{"role":"send","control":-1}`, `{"role":"send","control":65536}`, `{"role":"send","control":"1"}`} {
		var m api.Migration
		var r api.ResolveResult
		if json.Unmarshal([]byte(raw), &m) == nil || json.Unmarshal([]byte(raw), &r) == nil {
			t.Errorf("%s decoded: %+v, %+v", raw, m, r)
		}
	}
	var m api.Migration
	if err := json.Unmarshal([]byte(`{"role":"send","control":1}`), &m); err != nil || idsIgnored("s", m.Control) != nil {
		t.Errorf("control 1: %+v, %v; want honoured", m, err)
	}
	if idsIgnored("s", 0) == nil {
		t.Error("no control version: taken as honouring ids")
	}
}
