package balloon

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/virtio"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// migrate moves f's device and transport state, and a copy of its RAM,
// into a fresh fixture, through the encoded forms.
func (f *fixture) migrate(t *testing.T) *fixture {
	t.Helper()
	tb, err := f.tr.Save().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := hostCall(t, f.dev.SaveContext).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var ts virtio.TransportState
	var bs State
	if err := ts.UnmarshalBinary(tb); err != nil {
		t.Fatal(err)
	}
	if err := bs.UnmarshalBinary(bb); err != nil {
		t.Fatal(err)
	}
	mem := virtiotest.NewMem(len(f.mem.B))
	copy(mem.B, f.mem.B)
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	sink := &rangeSink{}
	setHintSink(t, dev, sink)
	if err := tr.Restore(bounded(t), ts); err != nil {
		t.Fatal(err)
	}
	if err := dev.RestoreContext(bounded(t), bs); err != nil {
		t.Fatal(err)
	}
	drv := *f.drv
	drv.Dev, drv.Mem = tr, mem
	return &fixture{dev: dev, tr: tr, drv: &drv, mem: mem, sink: sink}
}

func TestBalloonSaveRestore(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint|FPageReporting)
	setTarget(t, f.dev, 8)
	f.drv.SetConfig(4, 3)
	// Two hint sessions; the second stops with blocks held by the guest.
	id1 := hostCall(t, f.dev.StartHintContext)
	f.hintRound(3, id1, 0, 2)
	hostCall(t, f.dev.StopHintContext)
	id2 := hostCall(t, f.dev.StartHintContext)
	f.hintRound(3, id2, 2, 1)
	// The guest's stats buffer, held by the device.
	binary.LittleEndian.PutUint16(f.mem.B[bufBase:], 4)
	binary.LittleEndian.PutUint64(f.mem.B[bufBase+2:], 1234)
	statsHead := f.drv.Add(2, virtiotest.Buf{Addr: bufBase, Len: 10})
	f.drv.Kick(2)
	before := hostCall(t, f.dev.SaveContext)

	g := f.migrate(t)
	after := hostCall(t, g.dev.SaveContext)
	if after.Hint != before.Hint || after.Target != 8 || after.Actual != 3 || !after.StatsHeld ||
		after.StatsHead != statsHead || after.Stats.Values["free-memory"] != 1234 || !after.Stats.Updated.Equal(before.Stats.Updated) {
		t.Fatalf("restored %+v, saved %+v", after, before)
	}
	if g.drv.Config(0) != 8 || g.drv.Config(4) != 3 || g.drv.Config(8) != id2 {
		t.Fatalf("config space: target %d actual %d cmd_id %#x", g.drv.Config(0), g.drv.Config(4), g.drv.Config(8))
	}
	// Ids are never reused: the next session follows the last one.
	hostCall(t, g.dev.StopHintContext)
	if id3, err := g.dev.StartHintContext(bounded(t)); err != nil || id3 != id2+1 {
		t.Fatalf("next id %#x (%v), want %#x", id3, err, id2+1)
	}
	// The held stats buffer goes back to the guest at the next refresh.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	g.dev.RefreshStats(ctx)
	if used := g.drv.Used(2); len(used) != 1 || used[0].ID != uint32(statsHead) {
		t.Fatalf("stats buffer after restore: used %+v, want head %d", used, statsHead)
	}
	// Queues keep working: an inflate round trip.
	binary.LittleEndian.PutUint32(g.mem.B[bufBase+0x100:], 0x900)
	g.drv.Add(0, virtiotest.Buf{Addr: bufBase + 0x100, Len: 4})
	g.drv.Kick(0)
	if !g.mem.Discarded[0x900] || len(g.drv.Used(0)) != 1 {
		t.Fatal("inflate after restore did not work")
	}
}

func TestBalloonRestoreBeforeDriver(t *testing.T) {
	mem := virtiotest.NewMem(ramSize)
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	s := hostCall(t, dev.SaveContext)
	dev2 := New(mem, nil)
	tr2 := virtio.NewTransport("balloon", dev2, mem, nil, nil)
	dev2.SetSignaller(tr2)
	if err := tr2.Restore(bounded(t), tr.Save()); err != nil {
		t.Fatal(err)
	}
	if err := dev2.RestoreContext(bounded(t), s); err != nil {
		t.Fatal(err)
	}
	if got := hostCall(t, dev2.SaveContext); got.Hint.State != Idle || got.Hint.Config != CmdIDDone {
		t.Fatalf("fresh device restored as %+v", got)
	}
}

func TestBalloonRestoreMismatch(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	s := hostCall(t, f.dev.SaveContext)
	s.Features |= FFreePageHint
	s.Queues |= 1 << 3
	dev := New(f.mem, nil)
	if err := dev.RestoreContext(bounded(t), s); err == nil || !strings.Contains(err.Error(), "transport activated") {
		t.Fatalf("Restore into an unactivated device: %v", err)
	}
}

func TestBalloonStateValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    State
		want string
	}{
		{"features", State{Features: 1 << 40, Hint: HintState{Config: CmdIDDone}}, "never offered"},
		{"queues", State{Queues: 1 << 5, Hint: HintState{Config: CmdIDDone}}, "more than 5"},
		{"stats held", State{StatsHeld: true, Hint: HintState{Config: CmdIDDone}}, "held stats"},
		{"low id", State{Hint: HintState{State: Active, ID: 5, Config: 5}}, "below"},
		{"config", State{Hint: HintState{State: Active, ID: CmdIDFirst, Config: 7}}, "neither"},
		{"state", State{Hint: HintState{State: 9, Config: CmdIDDone}}, "session state"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if _, err := tc.s.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", tc.name)
		}
	}
}

func TestBalloonStateDecodeErrors(t *testing.T) {
	good, err := State{Hint: HintState{Config: CmdIDDone}, Stats: Stats{Values: map[string]uint64{"a": 1, "b": 2}}}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	swapped := append([]byte{}, good...)
	i := strings.Index(string(swapped), "a")
	j := strings.Index(string(swapped), "b")
	swapped[i], swapped[j] = 'b', 'a'
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"extra", append(append([]byte{}, good...), 0), "unexpected"},
		{"session 0", patch(good, 17, 0), "hint session state 0"},
		{"unsorted", swapped, "not sorted"},
	} {
		var s State
		if err := s.UnmarshalBinary(tc.b); err == nil || !errors.Is(err, state.ErrBadState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func patch(b []byte, off int, p ...byte) []byte {
	b = append([]byte{}, b...)
	copy(b[off:], p)
	return b
}

func FuzzBalloonState(f *testing.F) {
	good, _ := State{Features: FStatsVQ, Queues: 7, StatsHeld: true, StatsHead: 3,
		Hint:  HintState{State: Stopped, ID: CmdIDFirst, LastID: CmdIDFirst, Config: CmdIDStop},
		Stats: Stats{Updated: time.Unix(5, 0), Values: map[string]uint64{"free-memory": 9}}}.MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, state.ErrBadState) {
				t.Fatalf("error does not wrap state.ErrBadState: %v", err)
			}
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("does not re-encode: %v", err)
		}
	})
}
