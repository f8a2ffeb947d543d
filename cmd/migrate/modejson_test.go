package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// modeJSON is what migrate -resolve -json and -start-postcopy -json
// print, read as a script reads it: the test decodes into its own
// types, not migrate's, and checks the keys by name.
type modeJSON struct {
	Mode     string `json:"mode"`
	Outcome  string `json:"outcome"`
	Resolved string `json:"resolved"`
	Steps    []struct {
		To    string   `json:"to"`
		Act   string   `json:"act"`
		ID    string   `json:"id"`
		Side  api.Side `json:"side"`
		Error string   `json:"error"`
	} `json:"steps"`
	Source      *api.ResolveResult       `json:"source"`
	Destination *api.ResolveResult       `json:"destination"`
	Error       string                   `json:"error"`
	Exit        int                      `json:"exit"`
	ID          string                   `json:"id"`
	Asked       bool                     `json:"asked"`
	Accepted    bool                     `json:"accepted"`
	Answer      *api.StartPostcopyResult `json:"answer"`
}

// decodeOne checks that stdout is one JSON object and nothing else, and
// returns it, and the keys it has.
func decodeOne(t *testing.T, stdout string) (modeJSON, map[string]any) {
	t.Helper()
	var m modeJSON
	var keys map[string]any
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&keys); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if rest := stdout[dec.InputOffset():]; strings.TrimSpace(rest) != "" {
		t.Fatalf("stdout has more than one JSON object: %q after it", rest)
	}
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("stdout: %v", err)
	}
	return m, keys
}

// wantKeys checks that keys has every key of want, and none of not.
func wantKeys(t *testing.T, keys map[string]any, want, not []string) {
	t.Helper()
	for _, k := range want {
		if _, ok := keys[k]; !ok {
			t.Errorf("no key %q in %v", k, keys)
		}
	}
	for _, k := range not {
		if _, ok := keys[k]; ok {
			t.Errorf("key %q = %v, want none", k, keys[k])
		}
	}
}

// wantErrorSaid checks that the answer's error is a reason migrate
// printed on stderr, exactly: a whole line after "migrate: ", or the
// line that said it (on stdout without -json, stderr with it).
func wantErrorSaid(t *testing.T, reason, stderr string) {
	t.Helper()
	said := "\n" + stderr
	if !strings.Contains(said, "\nmigrate: "+reason+"\n") && !strings.Contains(said, "\n"+reason+"\n") {
		t.Errorf("error %q is no line migrate printed on stderr:\n%s", reason, stderr)
	}
}

// TestResolveJSON: migrate -resolve -json prints one JSON object on
// stdout, on every way it ends: its mode, outcome and exit code, where
// the guest runs (resolved, the run report's words), the acts sent (to
// which side, in order), each side's last answer to a look, and, with
// exit 1 or 2, error: the reason it printed on stderr, exactly. Before,
// -json was accepted and ignored: stdout held the text lines.
func TestResolveJSON(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		badJob   bool
		code     int
		outcome  string
		resolved string   // "": no key
		steps    string   // "to act" joined by commas
		src, dst api.Side // the last looks' sides; "": no key
		says     string   // in error
	}{
		{name: "job refused", badJob: true, code: 2, outcome: "job-refused", says: "nothing was started"},
		{name: "two migrations", code: 1, outcome: "unresolved", src: api.SideUnknown, dst: api.SideUnknown,
			says: "different migrations", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "c"
				c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			}},
		{name: "both run", code: 1, outcome: "unresolved", resolved: "both", src: api.SideRunning, dst: api.SideRunning,
			says: "BOTH the source", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "post-copy lost", code: 1, outcome: "unresolved", src: api.SidePostcopyBroken, dst: api.SidePostcopyBroken,
			says: "the guest is lost", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
				c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			}},
		{name: "source told migrated", code: 0, outcome: "resolved", resolved: "destination", steps: "source migrated,source quit",
			src: api.SideMigrated, dst: api.SideRunning, set: func(c *runCase) {
				c.src.tag, c.dst.tag = tagA, tagA
				c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "source migrated, quit", code: 0, outcome: "resolved", resolved: "destination", steps: "source quit",
			src: api.SideMigrated, dst: api.SideRunning, set: func(c *runCase) {
				c.src.tag, c.dst.tag = tagA, tagA
				c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "no source", code: 0, outcome: "resolved", resolved: "destination", src: api.SideNone, dst: api.SideRunning,
			set: func(c *runCase) {
				c.src.role = ""
				c.src.finishWith(0, "", api.SideNone)
				c.dst.tag = tagA
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "receiver at the source's socket", code: 0, outcome: "resolved", resolved: "destination",
			src: api.SidePostcopyBroken, dst: api.SideRunning, set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
				c.src.looked = func(f *fakeVMM) { f.role, f.side = "receive", api.SidePostcopyBroken }
			}},
		{name: "source resumed since", code: 1, outcome: "unresolved", resolved: "both", src: api.SideRunning, dst: api.SideRunning,
			says: "BOTH the source", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
				c.src.looked = func(f *fakeVMM) { f.side = api.SideRunning }
			}},
		{name: "unnamed running source", code: 1, outcome: "not-done", resolved: "destination", src: api.SideRunning, dst: api.SideRunning,
			says: "nothing here tells", set: func(c *runCase) {
				c.dst.controlV = 1
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
				c.src.role, c.src.controlV = "", 1
				c.src.finishWith(0, "", api.SideNone)
				c.src.looked = func(f *fakeVMM) { f.role, f.side = "send", api.SideRunning }
			}},
		{name: "source not handed over", code: 1, outcome: "not-done", resolved: "destination", src: api.SideUnknown, dst: api.SideRunning,
			says: "not done: the source", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
				c.src.looked = func(f *fakeVMM) { f.side = api.SideUnknown }
			}},
		{name: "older source not quit", code: 1, outcome: "not-done", resolved: "destination", src: api.SideMigrated, dst: api.SideRunning,
			says: "not done: quit not sent to", set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.older = true
				c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "source resumed", code: 0, outcome: "resolved", resolved: "source",
			steps: "destination discard,source resume,destination quit", src: api.SideUnknown, dst: api.SideUnknown,
			set: func(c *runCase) {
				c.src.tag, c.dst.tag = tagA, tagA
				c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			}},
		{name: "destination cancelled", code: 0, outcome: "resolved", resolved: "source", steps: "destination migrate-cancel",
			src: api.SideRunning, dst: api.SideFailed, set: func(c *runCase) {
				c.src.id, c.dst.id = "a", "a"
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			}},
		{name: "unnamed destination left", code: 1, outcome: "not-done", resolved: "source", src: api.SideRunning, dst: api.SideMigrating,
			says: "not done: migrate-cancel not sent to", set: func(c *runCase) {
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			}},
		{name: "nothing to resolve", code: 0, outcome: "nothing-to-resolve", src: api.SideFailed, dst: api.SideNone,
			set: func(c *runCase) {
				c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
				c.dst.role = ""
				c.dst.finishWith(0, "", api.SideNone)
			}},
		{name: "source unreachable, nothing held", code: 1, outcome: "unresolved", src: sideUnreachable, dst: api.SideFailed,
			says: "the destination holds no guest", set: func(c *runCase) {
				c.src.kill()
				c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			if tc.set != nil {
				tc.set(c)
			}
			path := c.writeJob(t)
			if tc.badJob {
				if err := os.WriteFile(path, []byte("source {\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb strings.Builder
			code := realMain([]string{"-resolve", "-json", "-config", path}, &out, &errb)
			t.Logf("exit %d, calls %s\nstdout %s\nstderr %s", code, c.callList(), out.String(), errb.String())
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			a, keys := decodeOne(t, out.String())
			wantKeys(t, keys, []string{"mode", "outcome", "exit"}, nil)
			if a.Mode != "resolve" || a.Outcome != tc.outcome || a.Exit != code || a.Resolved != tc.resolved {
				t.Errorf("mode %q, outcome %q, exit %d, resolved %q; want resolve, %q, %d, %q",
					a.Mode, a.Outcome, a.Exit, a.Resolved, tc.outcome, code, tc.resolved)
			}
			var steps []string
			for _, s := range a.Steps {
				steps = append(steps, s.To+" "+s.Act)
			}
			if got := strings.Join(steps, ","); got != tc.steps {
				t.Errorf("steps %q, want %q", got, tc.steps)
			}
			for _, look := range []struct {
				name string
				got  *api.ResolveResult
				want api.Side
			}{{"source", a.Source, tc.src}, {"destination", a.Destination, tc.dst}} {
				switch {
				case look.want == "" && look.got != nil:
					t.Errorf("%s's look %+v, want none", look.name, *look.got)
				case look.want != "" && (look.got == nil || look.got.Side != look.want):
					t.Errorf("%s's look %+v, want side %s", look.name, look.got, look.want)
				}
			}
			if code == 0 {
				wantKeys(t, keys, nil, []string{"error"})
				return
			}
			wantErrorSaid(t, a.Error, errb.String())
			wantSays(t, a.Error, tc.says)
		})
	}
}

// TestResolveJSONStepSays: a step's entry names the migration it acted
// on and what the VMM answered: the side a migrate-resolve action left,
// or why a cancel did not take (here a failing destination's VMM that
// refuses it; the guest runs on the source). Without -json, the lines
// -resolve prints on stdout go to stderr.
func TestResolveJSONStepSays(t *testing.T) {
	c := newRunCase(t)
	c.src.id, c.dst.id = "a", "a"
	c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
	c.dst.progress = engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverFailed}
	c.dst.committing = true // refuses the cancel, saying why
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-json", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d, calls %s\nstdout %s\nstderr %s", code, c.callList(), out.String(), errb.String())
	a, _ := decodeOne(t, out.String())
	if len(a.Steps) == 0 || a.Steps[0].Act != "migrate-cancel" || a.Steps[0].ID != "a" || !strings.Contains(a.Steps[0].Error, "COMMIT arrived") {
		t.Errorf("steps %+v: want the cancel of migration a, refused, saying why", a.Steps)
	}

	c = newRunCase(t)
	c.src.tag, c.dst.tag = tagA, tagA
	c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	out.Reset()
	errb.Reset()
	realMain([]string{"-resolve", "-json", "-config", c.writeJob(t)}, &out, &errb)
	a, _ = decodeOne(t, out.String())
	if len(a.Steps) == 0 || a.Steps[0].Act != "migrated" || a.Steps[0].Side != api.SideMigrated || a.Steps[0].Error != "" {
		t.Errorf("steps %+v: want the source told migrated, confirming it", a.Steps)
	}
	if !strings.Contains(errb.String(), "resolved: the guest runs on the destination") {
		t.Errorf("stderr %q: want the line -resolve prints on stdout without -json", errb.String())
	}
}

// TestStartPostcopyJSON: migrate -start-postcopy -json prints one JSON
// object on stdout, on every way it ends: whether the request went to
// the source's VMM (asked) and whether it took it (accepted, with its
// answer), the exit code, and with exit 1 or 2 the reason printed on
// stderr, exactly. Before, -json was ignored.
func TestStartPostcopyJSON(t *testing.T) {
	for _, tc := range []struct {
		name            string
		set             func(c *runCase)
		badJob          bool
		code            int
		asked, accepted bool
		id              string
		says            string
	}{
		{name: "accepted", code: 0, asked: true, accepted: true, id: "a"},
		{name: "job refused", badJob: true, code: 2, says: "nothing was started"},
		{name: "not the job's", code: 1, says: `takes part in migration "b"`, set: func(c *runCase) { c.dst.id = "b" }},
		{name: "refused", code: 1, asked: true, id: "a", says: `this VMM holds migration "b"`, set: func(c *runCase) {
			c.src.looked = func(f *fakeVMM) { f.id = "b" }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startPostcopyCase(t)
			if tc.set != nil {
				tc.set(c)
			}
			path := c.writeJob(t)
			if tc.badJob {
				if err := os.WriteFile(path, []byte("source {\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb strings.Builder
			code := realMain([]string{"-start-postcopy", "-json", "-config", path}, &out, &errb)
			t.Logf("exit %d\nstdout %s\nstderr %s", code, out.String(), errb.String())
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			a, keys := decodeOne(t, out.String())
			wantKeys(t, keys, []string{"mode", "asked", "accepted", "exit"}, nil)
			if a.Mode != "start-postcopy" || a.Exit != code || a.Asked != tc.asked || a.Accepted != tc.accepted || a.ID != tc.id {
				t.Errorf("mode %q, exit %d, asked %v, accepted %v, id %q; want start-postcopy, %d, %v, %v, %q",
					a.Mode, a.Exit, a.Asked, a.Accepted, a.ID, code, tc.asked, tc.accepted, tc.id)
			}
			if tc.accepted != (a.Answer != nil) || a.Answer != nil && (!a.Answer.Requested || a.Answer.Phase != engine.PhaseDirty) {
				t.Errorf("answer %+v: want the source's, requested in phase dirty, only when accepted", a.Answer)
			}
			if code == 0 {
				wantKeys(t, keys, nil, []string{"error"})
				wantSays(t, errb.String(), "post-copy requested on the source")
				return
			}
			wantErrorSaid(t, a.Error, errb.String())
			wantSays(t, a.Error, tc.says)
		})
	}
}

// TestModeJSONRefusalWhole: the error of a job refused (exit 2) is the
// whole reason migrate printed after "migrate: ", also where that
// spans lines (a path with a line break in it). Before, it was the
// last line alone: "x.hcl: no such file or directory".
func TestModeJSONRefusalWhole(t *testing.T) {
	path := t.TempDir() + "/jobs\nold/x.hcl"
	for _, mode := range []string{"-resolve", "-start-postcopy"} {
		var out, errb strings.Builder
		code := realMain([]string{mode, "-json", "-config", path}, &out, &errb)
		t.Logf("%s: exit %d\nstdout %s\nstderr %s", mode, code, out.String(), errb.String())
		a, _ := decodeOne(t, out.String())
		if code != 2 || a.Exit != 2 {
			t.Errorf("%s: exit %d, answer's %d, want 2", mode, code, a.Exit)
		}
		wantErrorSaid(t, a.Error, errb.String())
		wantSays(t, a.Error, path)
	}
}
