package vmm

import (
	"flag"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/state/statetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestMachineStateGolden pins the machine section payload
// (docs/ARCHITECTURE.md#versions).
func TestMachineStateGolden(t *testing.T) {
	regions, err := memory.Layout(4 << 30)
	if err != nil {
		t.Fatal(err)
	}
	m := machineState{Memory: 4 << 30, CPUs: 2, Balloon: true, Regions: regions}
	var got machineState
	if err := got.unmarshal(statetest.Golden(t, "machine", m.marshal(), *update)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("golden decodes to %+v, want %+v", got, m)
	}
}
