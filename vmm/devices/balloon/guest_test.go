package balloon

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/virtio"
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
	if _, err := hostCall(t, f.dev.SaveContext).MarshalBinary(); err != nil {
		t.Fatalf("the guest's statistics made the balloon's state unsaveable: %v", err)
	}
	if got := len(hostCall(t, f.dev.LastStatsContext).Values); got == 0 || got > maxStats {
		t.Errorf("%d statistics kept, want 1 to %d", got, maxStats)
	}
}

// TestQueueDisabledUnderDevice: a driver that writes QueueReady=0 to a
// queue the device is using (after DRIVER_OK, without a reset) must not
// crash the VMM when the host next uses that queue (RefreshStats hands
// the held stats buffer back).
func TestQueueDisabledUnderDevice(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	f.drv.Add(2, virtiotest.Buf{Addr: bufBase, Len: 10})
	f.drv.Kick(2) // the device holds the stats buffer
	f.drv.SetReg(0x030, 2)
	f.drv.SetReg(0x044, 0) // QueueReady=0 under the running device
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("RefreshStats panicked: %v", p)
			}
		}()
		f.dev.RefreshStats(ctx)
	}()
	// The device still works for the guest after a reset.
	if !f.drv.Setup(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused after reset")
	}
	f.drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})
	f.drv.Kick(0)
	if len(f.drv.Used(0)) != 1 {
		t.Error("inflate buffer not returned after a reset")
	}
}

// blockMem is guest RAM whose first Slice of gpa at blocks until release
// is closed, so a test can act while the device is inside a kick.
type blockMem struct {
	*virtiotest.Mem
	at      uint64
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (m *blockMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa == m.at {
		m.once.Do(func() {
			close(m.entered)
			<-m.release
		})
	}
	return m.Mem.Slice(gpa, n)
}

// blockedBalloon is a balloon device on a transport whose guest RAM
// blocks the first read of bufBase (blockMem), and a driver of it.
func blockedBalloon(t *testing.T) (*blockMem, *virtio.Transport, *virtiotest.Driver) {
	mem := &blockMem{Mem: virtiotest.NewMem(ramSize), at: bufBase,
		entered: make(chan struct{}), release: make(chan struct{})}
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	return mem, tr, &virtiotest.Driver{T: t, Dev: tr, Mem: mem.Mem}
}

// resetDuringKick kicks queue 0 on one goroutine (vCPU 0), which
// stops inside the device at the read of bufBase, resets the device from
// another (vCPU 1; Status=0), lets the kick go on once the reset reached
// the transport, and returns when both returned. It fails the test if the
// kick panicked.
func resetDuringKick(t *testing.T, mem *blockMem, tr *virtio.Transport, drv *virtiotest.Driver) {
	t.Helper()
	kicked, reset := make(chan any, 1), make(chan struct{})
	go func() {
		defer func() { kicked <- recover() }()
		drv.Kick(0)
	}()
	<-mem.entered
	go func() {
		defer close(reset)
		drv.SetReg(0x070, 0)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if st, _ := tr.Status(); st == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reset never reached the transport")
		}
	}
	close(mem.release)
	if p := <-kicked; p != nil {
		t.Fatalf("the kick panicked when the device was reset under it: %v", p)
	}
	<-reset
}

// TestResetDuringKick: a driver that resets the device (Status=0) from
// one vCPU while another vCPU's kick is being handled must not crash the
// VMM: the queues must not change under the device before its Reset.
func TestResetDuringKick(t *testing.T) {
	mem, tr, drv := blockedBalloon(t)
	if !drv.Setup(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused")
	}
	drv.PutLE32(bufBase, 0x800)
	drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})
	resetDuringKick(t, mem, tr, drv)
	if !drv.Setup(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused after reset")
	}
	drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})
	drv.Kick(0)
	if st, reason := tr.Status(); st&virtio.StatusNeedsReset != 0 {
		t.Fatalf("device failed after the reset: %s", reason)
	}
}

// countMem is guest RAM that counts what the device reads and discards.
type countMem struct {
	*virtiotest.Mem
	sliced, discards uint64
}

func (m *countMem) Slice(gpa, n uint64) ([]byte, error) {
	m.sliced += n
	return m.Mem.Slice(gpa, n)
}

// Check implements virtio.Checker: a bounds check reads nothing (as the
// VMM's guest RAM).
func (m *countMem) Check(gpa, n uint64) error {
	_, err := m.Mem.Slice(gpa, n)
	return err
}

func (m *countMem) Discard(gpa, n uint64) error {
	m.discards++
	return m.Mem.Discard(gpa, n)
}

// TestInflateWorkBounded: the work of one kick must not grow with the
// length of the guest's PFN buffer. Linux sends at most 256 PFNs per
// buffer; a hostile driver sending a 1 MiB buffer of scattered PFNs must
// not make one exit cost a quarter of a million discards (a vCPU stuck
// in the device also holds up the pause before stop-and-copy).
func TestInflateWorkBounded(t *testing.T) {
	mem := &countMem{Mem: virtiotest.NewMem(ramSize)}
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	drv := &virtiotest.Driver{T: t, Dev: tr, Mem: mem.Mem}
	if !drv.Setup(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused")
	}
	const n = 1 << 18 // PFNs: 1 MiB
	for i := range n {
		drv.PutLE32(blocks+4*uint64(i), uint32(0x800+2*(i%4096))) // no two adjacent
	}
	mem.sliced = 0
	for _, q := range []int{0, 1} { // inflate, deflate
		drv.Add(q, virtiotest.Buf{Addr: blocks, Len: 4 * n})
		drv.Kick(q)
		if len(drv.Used(q)) != 1 {
			t.Fatalf("queue %d: buffer not returned", q)
		}
		if q == 0 && hostCall(t, dev.TargetContext).Inflated == 0 {
			t.Error("nothing inflated")
		}
	}
	if st, reason := tr.Status(); st&virtio.StatusNeedsReset != 0 {
		t.Fatalf("device failed: %s", reason)
	}
	if mem.discards > 1024 || mem.sliced > 64<<10 {
		t.Errorf("two kicks cost %d discards and %d bytes read", mem.discards, mem.sliced)
	}
}

// TestKickDiscardsBounded: the discards one kick makes must not grow with
// the ring. A driver may list the same chain in every slot of the
// available ring and kick once: on the reporting queue, a chain of 64
// descriptors 64 times is 4096 discards (a million on a ring of 1024, at
// 2 to 20 us each, with the vCPU and the device lock held); on the
// inflate queue, a chain of MaxPFNs scattered PFNs 64 times. Linux sends
// one chain per kick (at most 256 PFNs, or 32 reported blocks).
func TestKickDiscardsBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    int
	}{{"inflate", 0}, {"reporting", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := &countMem{Mem: virtiotest.NewMem(ramSize)}
			dev := New(mem, nil)
			tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
			dev.SetSignaller(tr)
			drv := &virtiotest.Driver{T: t, Dev: tr, Mem: mem.Mem}
			const size = 64
			if !drv.Setup(FStatsVQ|FFreePageHint|FPageReporting|virtio.FVersion1, 5, size, ringBase) {
				t.Fatal("features refused")
			}
			if tc.q == 0 {
				for i := range 256 {
					drv.PutLE32(blocks+4*uint64(i), uint32(0x800+2*i))
				}
				drv.PutDesc(0, 0, blocks, 4*256, 0, 0)
			} else {
				for i := range size {
					drv.PutDesc(4, uint16(i), blocks+uint64(i)<<13, 4096, 2|1, uint16(i+1))
				}
				drv.PutDesc(4, size-1, blocks+(size-1)<<13, 4096, 2, 0)
			}
			avail := ringBase + uint64(tc.q)<<16 + 16*size
			for slot := range size {
				binary.LittleEndian.PutUint16(mem.B[avail+4+2*uint64(slot):], 0)
			}
			drv.SetAvailIdx(tc.q, size) // all 64 slots, one kick
			if st, reason := tr.Status(); st&virtio.StatusNeedsReset != 0 {
				t.Fatalf("device failed: %s", reason)
			}
			if used := binary.LittleEndian.Uint16(mem.B[ringBase+uint64(tc.q)<<16+0x8000+2:]); used != size {
				t.Fatalf("%d of %d chains used", used, size)
			}
			if mem.discards > 1024 {
				t.Errorf("one kick made %d discards", mem.discards)
			}
		})
	}
}

// TestLateStopKeepsNextSession: the host stops a round before the guest
// ran out of blocks and starts the next one at once (the engine's next
// pass); the guest's STOP for the old round arrives after the new id was
// published. A STOP before the echo of the current id belongs to an
// older round (a round starts with the echo): it must not end the new
// session, whose hints would all be lost. QEMU ignores it the same way
// ("a stale stop sign for the previous command").
func TestLateStopKeepsNextSession(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint)
	id1 := hostCall(t, f.dev.StartHintContext)
	f.drv.PutLE32(cmdBuf, id1)
	f.drv.Add(3, virtiotest.Buf{Addr: cmdBuf, Len: 4}, virtiotest.Buf{Addr: blocks, Len: 4 << 20, Write: true})
	f.drv.Kick(3)
	hostCall(t, f.dev.StopHintContext) // deadline: the guest has not sent its STOP yet
	id2 := hostCall(t, f.dev.StartHintContext)
	f.drv.PutLE32(stopBuf, CmdIDStop)
	f.drv.Add(3, virtiotest.Buf{Addr: stopBuf, Len: 4}) // round 1's STOP, late
	f.drv.Kick(3)
	f.sink.got = nil
	f.hintRound(3, id2, 1, 2) // the guest sees id2: echo, 2 blocks, STOP
	sum := hostCall(t, f.dev.HintStatusContext)
	if sum.CmdID != id2 || sum.Ranges != 2 || !sum.GuestStopped || len(f.sink.got) != 2 {
		t.Fatalf("session %#x: %+v, sink %v; want 2 ranges hinted after a late STOP of %#x", id2, sum, f.sink.got, id1)
	}
}

// TestFailedDeviceMigrates: a guest that breaks its balloon (one chain the
// device refuses: NEEDS_RESET) loses the balloon, never the VM's
// migration. The device's state must still encode, with the stats
// buffer the device held (Linux's driver keeps one there), and restore on
// a target, where the device is failed as it was until the driver resets it.
func TestFailedDeviceMigrates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		features  uint64
		queues    int
		statsHeld bool
	}{{"stats buffer held", FStatsVQ | FFreePageHint, 4, true}, {"no stats queue", FFreePageHint, 3, false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.features)
			if tc.statsHeld {
				f.drv.Add(2, virtiotest.Buf{Addr: bufBase + 0x100, Len: 10})
				f.drv.Kick(2)
			}
			f.drv.PutDesc(0, 0, bufBase, 16, 4, 0) // INDIRECT was not offered
			f.drv.Offer(0, 0)
			if st, _ := f.tr.Status(); st&virtio.StatusNeedsReset == 0 {
				t.Fatalf("status %#x: the device accepted an indirect descriptor", st)
			}
			if _, err := hostCall(t, f.dev.SaveContext).MarshalBinary(); err != nil {
				t.Fatalf("a failed balloon made the VM's state unsaveable: %v", err)
			}
			g := f.migrate(t)
			if st, _ := g.tr.Status(); st&virtio.StatusNeedsReset == 0 {
				t.Errorf("restored status %#x, want NEEDS_RESET as on the source", st)
			}
			if got, want := hostCall(t, g.dev.TargetContext).Features, hostCall(t, f.dev.TargetContext).Features; got != want {
				t.Errorf("restored features %#x, saved %#x", got, want)
			}
			// The driver's reset brings the device back on the target.
			if !g.drv.Setup(tc.features|virtio.FVersion1, tc.queues, 64, ringBase) {
				t.Fatal("features refused after reset")
			}
			g.drv.PutLE32(bufBase, 0x800)
			g.drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})
			g.drv.Kick(0)
			if len(g.drv.Used(0)) != 1 || hostCall(t, g.dev.TargetContext).Inflated != 1 {
				t.Error("the device does not work after the driver's reset on the target")
			}
		})
	}
}

// TestResetClearsFailureOfKickInFlight: a kick in flight on another vCPU
// when the driver resets the device finishes on the old rings; if those
// make it fail, that failure belongs to the device before the reset. A
// driver reads Status 0 once its reset returned (the spec has it wait for
// that before it sets the device up again); a NEEDS_RESET left over would
// keep every later kick from the device until the next reset.
func TestResetClearsFailureOfKickInFlight(t *testing.T) {
	mem, tr, drv := blockedBalloon(t)
	if !drv.Setup(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused")
	}
	drv.PutLE32(bufBase, 0x800)
	drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})          // blocks the kick inside the device
	drv.Add(0, virtiotest.Buf{Addr: bufBase + 0x100, Len: 16}) // then fails it:
	drv.PutDesc(0, 1, bufBase+0x100, 16, 4, 0)                 // INDIRECT was not offered
	resetDuringKick(t, mem, tr, drv)
	if st, reason := tr.Status(); st != 0 || reason != "" {
		t.Errorf("status %#x (%q) after the reset returned, want 0", st, reason)
	}
	if is := drv.Reg(0x060); is != 0 {
		t.Errorf("interrupt status %#x after the reset returned, want 0", is)
	}
}
