package transport

import (
	"math"
	"testing"
	"time"

	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// TestStatsRTTProto: Stats.RTT crosses the plugin boundary in
// nanoseconds; a plugin built before the field reports none (0), and a
// round trip of maxRTT or more, which would not fit a Duration or means
// nothing, reads as none measured.
func TestStatsRTTProto(t *testing.T) {
	in := Stats{BytesWire: 1, PagesData: 2, PagesZero: 3, Compressed: 4, RTT: 1500 * time.Microsecond}
	if got := statsFromProto(statsToProto(in)); got != in {
		t.Errorf("round trip: %+v, want %+v", got, in)
	}
	old := &pb.StatsResponse{BytesWire: 7} // an older plugin's answer
	if got := statsFromProto(old); got.RTT != 0 || got.BytesWire != 7 {
		t.Errorf("older plugin: %+v", got)
	}
	for _, ns := range []uint64{uint64(maxRTT), math.MaxUint64} {
		if got := statsFromProto(&pb.StatsResponse{RttNs: ns}); got.RTT != 0 {
			t.Errorf("rtt_ns %d read as %v, want none", ns, got.RTT)
		}
	}
	if got := statsToProto(Stats{RTT: -1}); got.GetRttNs() != 0 {
		t.Errorf("a negative RTT went out as %d", got.GetRttNs())
	}
}
