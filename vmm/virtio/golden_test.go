package virtio

import (
	"flag"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/vmm/state/statetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestStateGolden pins the virtio-mmio section payload
// (docs/ARCHITECTURE.md#versions).
func TestStateGolden(t *testing.T) {
	s := TransportState{Status: StatusAcknowledge | StatusDriver | StatusFeaturesOK | StatusDriverOK,
		DevFeatSel: 1, DrvFeatSel: 1, DrvFeatures: FVersion1 | 1, QueueSel: 1, IntStatus: 1, ConfigGen: 3,
		Queues: []QueueState{{Size: 256, Ready: true, DescAddr: 0x10000, AvailAddr: 0x11000, UsedAddr: 0x12000, NextAvail: 7, NextUsed: 5},
			{Size: 128, DescAddr: 0x20000}}}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got TransportState
	if err := got.UnmarshalBinary(statetest.Golden(t, "state", b, *update)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("golden decodes to %+v", got)
	}
}
