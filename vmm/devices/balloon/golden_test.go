package balloon

import (
	"flag"
	"reflect"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/state/statetest"
	"github.com/ferryvm/ferry/vmm/virtio"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestStateGolden pins the balloon section payload
// (docs/ARCHITECTURE.md#versions).
func TestStateGolden(t *testing.T) {
	s := State{Features: virtio.FVersion1 | FStatsVQ | FFreePageHint, Queues: 0b1111, Target: 256, Actual: 128,
		Hint:      HintState{State: Stopped, ID: CmdIDFirst + 9, LastID: CmdIDFirst + 8, Config: CmdIDStop, Ranges: 12, Bytes: 12 << 22, GuestStopped: true, Stale: 1},
		StatsHeld: true, StatsHead: 3,
		Stats:    Stats{Updated: time.Unix(1796428800, 5), Values: map[string]uint64{"free-memory": 1 << 30, "swap-in": 2}},
		Inflated: 64, Reported: 4}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got State
	if err := got.UnmarshalBinary(statetest.Golden(t, "state", b, *update)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("golden decodes to\n%+v, want\n%+v", got, s)
	}
}
