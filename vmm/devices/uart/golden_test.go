package uart

import (
	"flag"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/vmm/state/statetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestStateGolden pins the uart section payload, its own FUAR header
// included (docs/ARCHITECTURE.md#versions).
func TestStateGolden(t *testing.T) {
	s := State{DLL: 0x01, IER: ierRDI, IIR: iirRDA, LCR: 0x1b, MCR: 0x08, SCR: 0x42, RX: []byte("ferry")}
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
