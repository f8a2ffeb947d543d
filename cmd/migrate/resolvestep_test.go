package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// stepJSON is one entry of a -resolve -json answer's steps (or a run
// report's resolve.steps), read as a script reads it.
type stepJSON struct {
	To      string   `json:"to"`
	Act     string   `json:"act"`
	Side    api.Side `json:"side"`
	Outcome string   `json:"outcome"`
	Error   string   `json:"error"`
}

// resolveSteps runs migrate -resolve -json on c's job and returns its
// steps, each with its keys, and what it printed on stderr.
func resolveSteps(t *testing.T, c *runCase) ([]stepJSON, []map[string]any, string) {
	t.Helper()
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-json", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d, calls %s\nstdout %s\nstderr %s", code, c.callList(), out.String(), errb.String())
	var a struct {
		Steps []stepJSON `json:"steps"`
	}
	_, keys := decodeOne(t, out.String())
	if err := json.Unmarshal([]byte(out.String()), &a); err != nil {
		t.Fatal(err)
	}
	var stepKeys []map[string]any
	if list, ok := keys["steps"].([]any); ok {
		for _, s := range list {
			m, _ := s.(map[string]any)
			stepKeys = append(stepKeys, m)
		}
	}
	return a.Steps, stepKeys, errb.String()
}

// TestResolveJSONStepOutcome: each step says whether its request
// reached the VMM and what came of it (outcome): took, refused (the VMM
// answered no, and changed nothing), or unreachable (the request was
// never written: the connection failed, or it could not be encoded; the
// VMM did nothing). Before, a step whose connection failed and one the
// VMM refused both had an error alone, and a script could not tell
// "asked and refused" from "never asked"; until the "request not
// encoded" case, a request too long for a control line read as
// no-answer, one that may have run.
func TestResolveJSONStepOutcome(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		outcomes string // "to act outcome", by step, joined by commas
		says     string // in the first step's error
	}{
		{name: "took", outcomes: "destination discard took,source resume took,destination quit took"},
		{name: "refused", outcomes: "destination discard refused", says: "still running",
			set: func(c *runCase) { c.dst.refuseActions = true }},
		{name: "connection failed", outcomes: "destination discard unreachable", says: "connect to control socket",
			set: func(c *runCase) { // the socket is gone after the look: the discard finds no VMM
				c.dst.queried = afterFirstLook(func(f *fakeVMM) { os.Remove(f.sock) })
			}},
		{name: "request not encoded", outcomes: "destination discard unreachable", says: "line too long",
			set: func(c *runCase) { // an id no control line can carry, as reported: the discard naming it is never written
				c.src.id = strings.Repeat("x", control.MaxLine)
				c.dst.id = c.src.id
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			if tc.set != nil {
				tc.set(c)
			}
			steps, keys, _ := resolveSteps(t, c)
			var got []string
			for i, s := range steps {
				got = append(got, s.To+" "+s.Act+" "+s.Outcome)
				if _, ok := keys[i]["outcome"]; !ok {
					t.Errorf("step %d %v has no outcome", i, keys[i])
				}
				if (s.Outcome == "took") != (s.Error == "") {
					t.Errorf("step %d: outcome %q with error %q", i, s.Outcome, s.Error)
				}
			}
			if strings.Join(got, ",") != tc.outcomes {
				t.Errorf("steps %q, want %q", strings.Join(got, ","), tc.outcomes)
			}
			if tc.says != "" && len(steps) > 0 {
				wantSays(t, steps[0].Error, tc.says)
			}
		})
	}
}

// TestResolveJSONStepOtherSide: a migrate-resolve action the VMM
// answered without an error, but in another side than the act asks
// for, or in another role than the side it was sent to takes in the
// migration, is no confirmation: its step has an error naming what
// answered and what was asked (outcome unconfirmed), and no act of the
// look follows it: after another role, the discarded destination is
// not quit (TestResolveResumeAnsweredInWrongRole; it was, until then).
// Before, such a step had no
// error: a side other than asked showed only as its side, and an answer
// in the other role not at all. Another role with another side is
// TestResolveJSONStepOtherSideAndRole's.
func TestResolveJSONStepOtherSide(t *testing.T) {
	testStepOtherSide(t, []stepOtherCase{
		{name: "another side", steps: "destination discard", says: []string{"destination", "side handover-unknown, not discarded"},
			set:      func(c *runCase) { c.dst.actSide = api.SideUnknown },
			dstActed: "resolve discard  tag " + tagA},
		{name: "another role", steps: "destination discard,source resume", which: 1,
			says: []string{"source's socket", `role "receive"`, "not send"},
			set: func(c *runCase) {
				c.src.queried = afterFirstLook(func(f *fakeVMM) { f.role = "receive" })
			},
			dstActed: "resolve discard  tag " + tagA, roles: `report role "receive" in migration`},
	})
}

// TestResolveJSONStepOtherSideAndRole: an action answered in another
// role AND another side than asked is no confirmation for both reasons:
// its step's error names the role and the side that answered and those
// asked, and the resolve ends as after another role alone, the wrong
// roles said and no command printed (the VMM at that socket is not
// this job's side). Before, the side decided: a plain unconfirmed step
// whose error named the role but not the side asked, and manual printed
// its resume lines for a VMM that is not this job's.
func TestResolveJSONStepOtherSideAndRole(t *testing.T) {
	testStepOtherSide(t, []stepOtherCase{
		{name: "destination's discard", steps: "destination discard",
			says: []string{"destination's socket", `role "send"`, "not receive", "side handover-unknown, not discarded"},
			set: func(c *runCase) {
				c.dst.actSide = api.SideUnknown
				c.dst.queried = afterFirstLook(func(f *fakeVMM) { f.role = "send" })
			},
			dstActed: "resolve discard  tag " + tagA, roles: `report role "send" in migration`},
		{name: "source's resume", steps: "destination discard,source resume", which: 1,
			says: []string{"source's socket", `role "receive"`, "not send", "side migrated, not running"},
			set: func(c *runCase) {
				c.src.actSide = api.SideMigrated
				c.src.queried = afterFirstLook(func(f *fakeVMM) { f.role = "receive" })
			},
			dstActed: "resolve discard  tag " + tagA, roles: `report role "receive" in migration`},
	})
}

// stepOtherCase is one case of testStepOtherSide.
type stepOtherCase struct {
	name     string
	set      func(c *runCase)
	steps    string   // "to act", joined by commas
	which    int      // the step unconfirmed
	says     []string // in its error
	dstActed string   // the acts the destination got
	// roles, if set, is what migrate says of the wrong roles (manual's
	// advice); it then prints no command.
	roles string
}

// testStepOtherSide runs each case's -resolve -json, both sides
// handover-unknown in one migration, and checks the step unconfirmed.
func testStepOtherSide(t *testing.T, cases []stepOtherCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			tc.set(c)
			steps, _, stderr := resolveSteps(t, c)
			var got []string
			for _, s := range steps {
				got = append(got, s.To+" "+s.Act)
			}
			if tc.roles != "" {
				wantSays(t, stderr, tc.roles)
				wantNoCommand(t, stderr, "to a VMM that is not this job's side")
			}
			if strings.Join(got, ",") != tc.steps {
				t.Errorf("steps %q, want %q", strings.Join(got, ","), tc.steps)
			}
			if len(steps) <= tc.which {
				t.Fatalf("no step %d", tc.which)
			}
			if s := steps[tc.which]; s.Error == "" || s.Outcome != "unconfirmed" {
				t.Errorf("step %d %+v: want outcome unconfirmed, an error", tc.which, s)
			}
			wantSays(t, steps[tc.which].Error, tc.says...)
			if got := strings.Join(c.dst.actIDs(), ","); got != tc.dstActed {
				t.Errorf("the destination was asked %q, want %q", got, tc.dstActed)
			}
		})
	}
}
