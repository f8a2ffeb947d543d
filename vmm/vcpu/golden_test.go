package vcpu

import (
	"flag"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/vmm/state/statetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestStateGolden pins the vcpu section payload (docs/ARCHITECTURE.md#versions).
func TestStateGolden(t *testing.T) {
	s := sampleState()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got State
	if err := got.UnmarshalBinary(statetest.Golden(t, "state", b, *update)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("golden decodes to %+v", got)
	}
}
