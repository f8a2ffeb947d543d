package balloon

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/guestlog"
	"github.com/ferryvm/ferry/vmm/virtio"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

type rangeSink struct{ got [][3]uint64 }

func (s *rangeSink) HintRange(id uint32, gpa, n uint64) {
	s.got = append(s.got, [3]uint64{uint64(id), gpa, n})
}

const (
	ringBase = 0x10000  // queues' rings: 64 KiB each
	bufBase  = 0x100000 // small buffers
	blocks   = 0x400000 // 4 MiB blocks from here
	ramSize  = 64 << 20
	cmdBuf   = bufBase
	stopBuf  = bufBase + 0x10
)

// testBound bounds each host call a test makes (hostCall): a device
// lock that is never freed fails that call, and the test, rather than
// hanging it.
const testBound = 10 * time.Second

// hostCall makes one of the device's host calls (the ...Context forms)
// under its own testBound deadline, as the VMM makes them under a
// command's, and fails the test on its error.
func hostCall[T any](t testing.TB, call func(context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testBound)
	defer cancel()
	v, err := call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// bounded is a context that ends testBound from now, or with the test:
// for a host call whose error the test looks at itself.
func bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testBound)
	t.Cleanup(cancel)
	return ctx
}

// setTarget is SetTargetContext through hostCall.
func setTarget(t testing.TB, d *Device, pages uint32) Target {
	t.Helper()
	return hostCall(t, func(ctx context.Context) (Target, error) { return d.SetTargetContext(ctx, pages) })
}

// setHintSink is SetHintSinkContext through hostCall.
func setHintSink(t testing.TB, d *Device, s HintSink) {
	t.Helper()
	hostCall(t, func(ctx context.Context) (struct{}, error) { return struct{}{}, d.SetHintSinkContext(ctx, s) })
}

type fixture struct {
	dev  *Device
	tr   *virtio.Transport
	drv  *virtiotest.Driver
	mem  *virtiotest.Mem
	sink *rangeSink
}

func newFixture(t *testing.T, features uint64) *fixture {
	mem := virtiotest.NewMem(ramSize)
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	sink := &rangeSink{}
	setHintSink(t, dev, sink)
	f := &fixture{dev: dev, tr: tr, drv: &virtiotest.Driver{T: t, Dev: tr, Mem: mem}, mem: mem, sink: sink}
	n := 2
	for _, b := range []uint64{FStatsVQ, FFreePageHint, FPageReporting} {
		if features&b != 0 {
			n++
		}
	}
	if !f.drv.Setup(features|virtio.FVersion1, n, 64, ringBase) {
		t.Fatal("features refused")
	}
	return f
}

// hintRound plays Linux's driver for one round: echo id, hint nblocks
// 4 MiB blocks, STOP.
func (f *fixture) hintRound(qi int, id uint32, firstBlock, nblocks int) {
	f.drv.PutLE32(cmdBuf, id)
	f.drv.Add(qi, virtiotest.Buf{Addr: cmdBuf, Len: 4})
	for i := 0; i < nblocks; i++ {
		f.drv.Add(qi, virtiotest.Buf{Addr: uint64(blocks + (firstBlock+i)<<22), Len: 4 << 20, Write: true})
	}
	f.drv.PutLE32(stopBuf, CmdIDStop)
	f.drv.Add(qi, virtiotest.Buf{Addr: stopBuf, Len: 4})
	f.drv.Kick(qi)
}

func TestHintSessionCompactedQueues(t *testing.T) {
	// Without STATS_VQ the hint queue is number 2, as Linux numbers it.
	f := newFixture(t, FFreePageHint)
	if got := f.drv.Config(8); got != CmdIDDone {
		t.Fatalf("initial cmd_id %#x, want DONE", got)
	}
	id := hostCall(t, f.dev.StartHintContext)
	if f.drv.Config(8) != id || f.drv.Reg(0x060)&virtio.InterruptConfig == 0 {
		t.Fatalf("config cmd_id %#x (want %#x) or no config interrupt", f.drv.Config(8), id)
	}
	// A block queued before the echo is ignored.
	f.drv.Add(2, virtiotest.Buf{Addr: blocks + 7<<22, Len: 4 << 20, Write: true})
	f.hintRound(2, id, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sum, err := f.dev.WaitHint(ctx)
	if err != nil || sum.Ranges != 3 || sum.Bytes != 12<<20 || !sum.GuestStopped || sum.Stale != 1 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	if len(f.sink.got) != 3 || f.sink.got[0] != [3]uint64{uint64(id), blocks, 4 << 20} {
		t.Fatalf("sink got %v", f.sink.got)
	}
	if used := f.drv.Used(2); len(used) != 6 {
		t.Errorf("%d buffers used, want all 6", len(used))
	}
	for p := uint64(blocks / 4096); p < (blocks+3<<22)/4096; p++ {
		if f.mem.Dirty[p] || f.mem.Discarded[p] {
			t.Fatalf("hinted page %#x touched by the device", p*4096)
		}
	}
	if !f.mem.Dirty[f.drv.UsedRing(2)/4096] {
		t.Error("used ring write not marked dirty")
	}
	hostCall(t, f.dev.StopHintContext)
	if f.drv.Config(8) != CmdIDStop {
		t.Errorf("after stop cmd_id %#x", f.drv.Config(8))
	}
	hostCall(t, f.dev.DoneHintContext)
	if f.drv.Config(8) != CmdIDDone {
		t.Errorf("after done cmd_id %#x", f.drv.Config(8))
	}
}

func TestHintsAfterStopDropped(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint|FPageReporting)
	id := hostCall(t, f.dev.StartHintContext)
	f.drv.PutLE32(cmdBuf, id)
	f.drv.Add(3, virtiotest.Buf{Addr: cmdBuf, Len: 4})
	f.drv.Add(3, virtiotest.Buf{Addr: blocks, Len: 4 << 20, Write: true})
	f.drv.Kick(3)
	hostCall(t, f.dev.StopHintContext) // the host stops: blocks in flight must not count
	f.drv.Add(3, virtiotest.Buf{Addr: blocks + 1<<22, Len: 4 << 20, Write: true})
	f.drv.Kick(3)
	if sum := hostCall(t, f.dev.HintStatusContext); sum.Ranges != 1 || sum.Stale != 1 || sum.State != "stopped" {
		t.Fatalf("summary %+v", sum)
	}
	if _, err := f.dev.StartHintContext(bounded(t)); err != nil {
		t.Fatalf("restart after stop: %v", err)
	}
	if id2 := f.drv.Config(8); id2 == id || id2 < CmdIDFirst {
		t.Errorf("second id %#x after %#x", id2, id)
	}
}

func TestInflateDeflate(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	setTarget(t, f.dev, 4)
	pfns := []uint32{0x800, 0x801, 0x802, 0x900}
	for i, p := range pfns {
		binary.LittleEndian.PutUint32(f.mem.B[bufBase+4*i:], p)
		copy(f.mem.B[uint64(p)<<12:], "guest data")
	}
	f.drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 16})
	f.drv.Kick(0)
	for _, p := range pfns {
		if !f.mem.Discarded[uint64(p)] || f.mem.B[uint64(p)<<12] != 0 {
			t.Errorf("inflated pfn %#x not discarded", p)
		}
	}
	if f.mem.Discarded[0x803] {
		t.Error("a page next to the balloon was discarded")
	}
	f.drv.SetConfig(4, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if tg, err := f.dev.WaitActual(ctx); err != nil || tg.ActualPages != 4 || tg.Inflated != 4 {
		t.Fatalf("target %+v, %v", tg, err)
	}
	f.drv.Add(1, virtiotest.Buf{Addr: bufBase, Len: 8})
	f.drv.Kick(1)
	if tg := hostCall(t, f.dev.TargetContext); tg.Inflated != 2 {
		t.Errorf("after deflating 2: %+v", tg)
	}
	if len(f.drv.Used(0)) != 1 || len(f.drv.Used(1)) != 1 {
		t.Error("inflate/deflate buffers not returned")
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	put := func(free uint64) {
		b := f.mem.B[bufBase:]
		binary.LittleEndian.PutUint16(b, 4) // free-memory
		binary.LittleEndian.PutUint64(b[2:], free)
		binary.LittleEndian.PutUint16(b[10:], 99) // unknown tag: kept by number
		binary.LittleEndian.PutUint64(b[12:], 7)
		f.drv.Add(2, virtiotest.Buf{Addr: bufBase, Len: 20})
		f.drv.Kick(2)
	}
	put(100)
	if st := hostCall(t, f.dev.LastStatsContext); st.Values["free-memory"] != 100 || st.Values["tag-99"] != 7 {
		t.Fatalf("first stats %+v", st)
	}
	// Ask for fresh stats; the (sequential) fake guest answers afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.dev.RefreshStats(ctx); err == nil {
		t.Fatal("RefreshStats returned before the guest answered")
	}
	if len(f.drv.Used(2)) != 1 {
		t.Fatal("stats buffer not handed back to the guest")
	}
	put(200)
	if st := hostCall(t, f.dev.LastStatsContext); st.Values["free-memory"] != 200 {
		t.Fatalf("refreshed stats %+v", st)
	}
}

func TestReporting(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint|FPageReporting)
	f.mem.B[blocks] = 1
	f.drv.Add(4, virtiotest.Buf{Addr: blocks, Len: 2 << 20, Write: true},
		virtiotest.Buf{Addr: blocks + 4<<20, Len: 2 << 20, Write: true})
	f.drv.Kick(4)
	if !f.mem.Discarded[blocks/4096] || !f.mem.Discarded[(blocks+4<<20)/4096+511] || f.mem.B[blocks] != 0 {
		t.Error("reported ranges not discarded")
	}
	if tg := hostCall(t, f.dev.TargetContext); tg.Reported != 4<<20 {
		t.Errorf("reported %d bytes", tg.Reported)
	}
	if len(f.drv.Used(4)) != 1 {
		t.Error("report not completed")
	}
}

func TestBadHintCommandFailsDevice(t *testing.T) {
	f := newFixture(t, FFreePageHint)
	hostCall(t, f.dev.StartHintContext)
	f.drv.Add(2, virtiotest.Buf{Addr: cmdBuf, Len: 8})
	f.drv.Kick(2)
	if st, reason := f.tr.Status(); st&virtio.StatusNeedsReset == 0 {
		t.Fatalf("status %#x (%s), want NEEDS_RESET", st, reason)
	}
	// The host side must not hang on a failed device.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := f.dev.WaitHint(ctx); err != nil {
		t.Errorf("WaitHint on a failed device: %v", err)
	}
}

func TestHintWithoutFeature(t *testing.T) {
	f := newFixture(t, FStatsVQ)
	if _, err := f.dev.StartHintContext(bounded(t)); !errors.Is(err, ErrNoFreePageHint) {
		t.Fatalf("StartHintContext without FREE_PAGE_HINT: %v, want ErrNoFreePageHint", err)
	}
}

// logLines collects a device's log, one string per record.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *logLines) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func newLoggedFixture(t *testing.T, features uint64) (*fixture, *logLines) {
	f := newFixture(t, features)
	logs := &logLines{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	f.dev.log, f.dev.glog = log, guestlog.New(log, time.Minute)
	t.Cleanup(f.dev.glog.Stop)
	return f, logs
}

// TestHintRangesCapped: a guest that hints past the per-session cap has
// the rest dropped, counted in the summary and logged once.
func TestHintRangesCapped(t *testing.T) {
	f, logs := newLoggedFixture(t, FFreePageHint)
	f.dev.hint.max = 3
	id := hostCall(t, f.dev.StartHintContext)
	f.hintRound(2, id, 0, 10)
	sum := hostCall(t, f.dev.HintStatusContext)
	if sum.Ranges != 3 || sum.Dropped != 7 || !sum.GuestStopped {
		t.Errorf("summary %+v; want 3 ranges, 7 dropped, guest stopped", sum)
	}
	if len(f.sink.got) != 3 {
		t.Errorf("sink got %d ranges, want the 3 under the cap", len(f.sink.got))
	}
	if got := logs.matching("cap"); len(got) != 1 || !strings.Contains(got[0], "dropped=1") {
		t.Errorf("cap warnings %q; want one, for the first dropped range", got)
	}
	// The next session starts with a fresh count.
	hostCall(t, f.dev.StopHintContext)
	id2 := hostCall(t, f.dev.StartHintContext)
	f.hintRound(2, id2, 0, 2)
	if sum := hostCall(t, f.dev.HintStatusContext); sum.Ranges != 2 || sum.Dropped != 0 {
		t.Errorf("next session %+v; want 2 ranges, none dropped", sum)
	}
}

// failingDiscard is guest RAM whose pages cannot be punched (as for a
// PFN that is not RAM on a real VMM).
type failingDiscard struct{ Memory }

func (failingDiscard) Discard(gpa, n uint64) error { return errors.New("not RAM") }

// TestGuestWarningsRateLimited: a guest that inflates and reports pages
// that cannot be discarded, in a loop, gets one log line per kind, not
// one per buffer.
func TestGuestWarningsRateLimited(t *testing.T) {
	f, logs := newLoggedFixture(t, FPageReporting)
	f.dev.mem = failingDiscard{f.mem}
	binary.LittleEndian.PutUint32(f.mem.B[bufBase:], 0x900)
	for range 1000 {
		f.drv.Add(0, virtiotest.Buf{Addr: bufBase, Len: 4})
		f.drv.Kick(0)
		f.drv.Add(2, virtiotest.Buf{Addr: blocks, Len: 1 << 20, Write: true})
		f.drv.Kick(2)
	}
	for _, msg := range []string{"not RAM ignored", "not discarded"} {
		if got := logs.matching(msg); len(got) != 1 {
			t.Errorf("%d lines about %q after 1000 bad buffers; want 1", len(got), msg)
		}
	}
	if st, reason := f.tr.Status(); st&virtio.StatusNeedsReset != 0 {
		t.Errorf("the device failed (%s); pages it cannot discard are ignored, not fatal", reason)
	}
}

// TestWindowSequences: what the hint window (framework/hint/window.go)
// makes of the balloon provider's calls, on this device. A DONE that
// ended a running session (window: BalloonDone cancels the BalloonHint
// in flight, whose WaitHint returns, StopHintContext, then
// DoneHintContext) leaves cmd_id DONE with a config interrupt; a second
// DONE (the window's end after the provider's, or the destination's
// after restore) changes nothing and raises no interrupt; a DONE once
// the driver is gone (reset) is harmless too.
func TestWindowSequences(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint|FPageReporting)
	ack := func() uint32 { // read and acknowledge the interrupt status
		st := f.drv.Reg(0x060)
		f.drv.SetReg(0x064, st)
		return st
	}
	id := hostCall(t, f.dev.StartHintContext)
	f.drv.PutLE32(cmdBuf, id)
	f.drv.Add(3, virtiotest.Buf{Addr: cmdBuf, Len: 4})
	f.drv.Add(3, virtiotest.Buf{Addr: blocks, Len: 4 << 20, Write: true})
	f.drv.Kick(3) // echoed, one block hinted, no STOP yet: the session runs
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the window's BalloonDone cancelled the call
	if sum, err := f.dev.WaitHint(ctx); !errors.Is(err, context.Canceled) || sum.State != "active" || sum.Ranges != 1 {
		t.Fatalf("WaitHint of a cancelled call: %+v, %v", sum, err)
	}
	hostCall(t, f.dev.StopHintContext)
	ack()
	if sum := hostCall(t, f.dev.DoneHintContext); sum.State != "idle" || f.drv.Config(8) != CmdIDDone {
		t.Fatalf("after DONE: %+v, cmd_id %#x", sum, f.drv.Config(8))
	}
	if ack()&virtio.InterruptConfig == 0 {
		t.Error("DONE raised no config interrupt: the guest would keep its blocks")
	}
	hostCall(t, f.dev.DoneHintContext)
	if st := ack(); st&virtio.InterruptConfig != 0 || f.drv.Config(8) != CmdIDDone {
		t.Errorf("a second DONE: interrupt status %#x, cmd_id %#x; want none and DONE", st, f.drv.Config(8))
	}
	f.drv.SetReg(0x070, 0) // the driver resets the device
	hostCall(t, f.dev.DoneHintContext)
	if f.drv.Config(8) != CmdIDDone {
		t.Errorf("DONE after a reset: cmd_id %#x", f.drv.Config(8))
	}
}

// TestStatsPrimedBeforeDriverOK plays Linux's virtio_balloon probe:
// init_vqs puts one statistics buffer on the stats queue and kicks it
// before virtio_device_ready sets DRIVER_OK, and the driver gives a
// buffer again only after the device used that one. The device must
// still get numbers: the primed buffer's at DRIVER_OK, and fresh ones
// for a host's request. Before, the early kick was dropped, the device
// never held the buffer, a request had nothing to hand back and the
// guest never sent statistics.
func TestStatsPrimedBeforeDriverOK(t *testing.T) {
	mem := virtiotest.NewMem(ramSize)
	dev := New(mem, nil)
	tr := virtio.NewTransport("balloon", dev, mem, nil, nil)
	dev.SetSignaller(tr)
	drv := &virtiotest.Driver{T: t, Dev: tr, Mem: mem}
	const statsQ = 2
	put := func(free uint64) {
		binary.LittleEndian.PutUint16(mem.B[bufBase:], 4) // free-memory
		binary.LittleEndian.PutUint64(mem.B[bufBase+2:], free)
		drv.Add(statsQ, virtiotest.Buf{Addr: bufBase, Len: 10})
		drv.Kick(statsQ)
	}
	if !drv.Prepare(FStatsVQ|virtio.FVersion1, 3, 64, ringBase) {
		t.Fatal("features refused")
	}
	put(100) // init_vqs, before DRIVER_OK
	drv.SetReg(0x070, 1|2|8|4)
	if st, _ := tr.Status(); st&virtio.StatusNeedsReset != 0 {
		t.Fatalf("status %#x after DRIVER_OK", st)
	}
	if st := hostCall(t, dev.LastStatsContext); st.Values["free-memory"] != 100 {
		t.Errorf("statistics after DRIVER_OK %+v, want the primed buffer's free-memory 100", st.Values)
	}

	since := hostCall(t, dev.RequestStatsContext)
	if used := drv.Used(statsQ); len(used) != 1 {
		t.Fatalf("a stats request handed %d buffers back, want the primed one: the guest is never asked", len(used))
	}
	put(200) // the driver's stats_handle_request
	st, err := dev.AwaitStats(bounded(t), since)
	if err != nil || st.Values["free-memory"] != 200 {
		t.Errorf("requested statistics %+v (%v), want free-memory 200", st.Values, err)
	}
}
