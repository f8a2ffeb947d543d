package balloon

import (
	"encoding/binary"
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// Tests of what a hostile or broken guest driver can do to the balloon
// (the guest-boundary audit): it may lose its own statistics, hints or
// balloon, never the VMM's migration.

// TestStatsTagsCannotBreakSave: a guest that reports more distinct stat
// tags than a saved state carries (maxStats) must not make the device's
// state unsaveable: that would fail every migration of the VM.
func TestStatsTagsCannotBreakSave(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	const n = 1000
	b := f.mem.B[bufBase:]
	for i := range n {
		binary.LittleEndian.PutUint16(b[10*i:], uint16(100+i)) // unknown tags
		binary.LittleEndian.PutUint64(b[10*i+2:], uint64(i))
	}
	f.drv.Add(2, virtiotest.Buf{Addr: bufBase, Len: 10 * n})
	f.drv.Kick(2)
	if _, err := f.dev.Save().MarshalBinary(); err != nil {
		t.Fatalf("the guest's statistics made the balloon's state unsaveable: %v", err)
	}
	if got := len(f.dev.LastStats().Values); got == 0 || got > maxStats {
		t.Errorf("%d statistics kept, want 1 to %d", got, maxStats)
	}
}
