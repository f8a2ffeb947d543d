package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveJSONUnreachableLookHasNoVMState: the look of a side that
// did not answer says side unreachable and nothing of its VM's state,
// which is unknown (docs/JOBS.md: "side unreachable"); a side that
// answered has its vm_state. Before, the unreachable look said
// "vm_state": "".
func TestResolveJSONUnreachableLookHasNoVMState(t *testing.T) {
	c := newRunCase(t)
	c.src.kill()
	c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-json", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d\nstdout %s\nstderr %s", code, out.String(), errb.String())
	_, keys := decodeOne(t, out.String())
	src, _ := keys["source"].(map[string]any)
	dst, _ := keys["destination"].(map[string]any)
	if src == nil || src["side"] != string(sideUnreachable) {
		t.Fatalf("source %v: want side unreachable", keys["source"])
	}
	if v, ok := src["vm_state"]; ok {
		t.Errorf("the unreachable source's look has vm_state %q: its state is unknown", v)
	}
	if dst == nil || dst["vm_state"] != "paused" {
		t.Errorf("destination %v: want its vm_state, paused", keys["destination"])
	}
}
