package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunReportSaysResolve: a run whose resolver ran (here after an
// unknown handover) says in its report what the resolve did and saw
// (resolve: the acts tried, in order, each with its outcome, and each
// side's last look), the source's quit once the guest was found on the
// destination included, so that the report alone says what was done
// to the guest; a run that needed no resolve has no resolve. The text
// report says the acts too, one line each with its outcome. Before,
// the report said where the guest runs (resolved) and nothing of the
// acts: those were on stderr alone; until the text check, the text
// report said nothing of them.
func TestRunReportSaysResolve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *runCase)
		steps    string // "to act outcome", joined by commas; "": none; "-": no resolve key
		resolved string
	}{
		{name: "resolved to the source", resolved: "source",
			steps: "destination discard took,source resume took,destination quit took", set: func(c *runCase) {
				c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			}},
		{name: "resolved to the destination", resolved: "destination",
			steps: "source migrated took,source quit took", set: func(c *runCase) {
				c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}},
		{name: "unresolved, no act sent", steps: "", set: func(c *runCase) {
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.resolveDown = true
		}},
		{name: "completed, no resolve", steps: "-", set: func(c *runCase) {
			c.src.finishWith(2, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			rep, _, _ := c.run(context.Background(), t)
			var text strings.Builder
			printReport(&text, rep)
			wantTextSteps(t, text.String(), tc.steps)
			m := reportJSON(t, rep)
			if got, _ := m["resolved"].(string); got != tc.resolved {
				t.Errorf("resolved %q, want %q", got, tc.resolved)
			}
			res, ok := m["resolve"].(map[string]any)
			if tc.steps == "-" {
				if ok {
					t.Errorf("resolve %v: want none, no resolve ran", res)
				}
				return
			}
			if !ok {
				t.Fatalf("report %v has no resolve", m)
			}
			var got []string
			list, _ := res["steps"].([]any)
			for _, s := range list {
				st, _ := s.(map[string]any)
				got = append(got, strings.Join([]string{str(st["to"]), str(st["act"]), str(st["outcome"])}, " "))
			}
			if strings.Join(got, ",") != tc.steps {
				t.Errorf("resolve steps %q, want %q", strings.Join(got, ","), tc.steps)
			}
			for _, side := range []string{"source", "destination"} {
				if look, _ := res[side].(map[string]any); look == nil || look["side"] == nil {
					t.Errorf("resolve has no look at the %s: %v", side, res)
				}
			}
		})
	}
}

// wantTextSteps checks that the text report says each of steps ("to
// act outcome", joined by commas; "-": no resolve ran) on a line of its
// own, in order, and no other act ("": that it sent none).
func wantTextSteps(t *testing.T, text, steps string) {
	t.Helper()
	var got, want []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "resolve ") {
			got = append(got, line)
		}
	}
	switch steps {
	case "-":
	case "":
		want = []string{"resolve       no act sent"}
	default:
		for _, st := range strings.Split(steps, ",") {
			f := strings.Fields(st)
			want = append(want, fmt.Sprintf("resolve       %s on the %s: %s", f[1], f[0], f[2]))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the text report says of the resolve:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// str is v as a string ("" when it is none).
func str(v any) string {
	s, _ := v.(string)
	return s
}
