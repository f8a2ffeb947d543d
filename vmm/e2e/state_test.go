package e2e

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

const stateWorkload = "workload=hog:256,dirty:32@16,kv:16"

// inProcessVM is a VM run by the test process, with its serial lines.
type inProcessVM struct {
	vm     *vmm.VM
	serial *lineWriter
	done   chan error
}

func runInProcess(t *testing.T, ctx context.Context, cfg vmm.Config) *inProcessVM {
	t.Helper()
	p := &inProcessVM{serial: newLineWriter(), done: make(chan error, 1)}
	cfg.Serial = p.serial
	vm, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.vm = vm
	go func() { _, err := vm.Run(ctx); p.done <- err }()
	t.Cleanup(func() {
		vm.Stop()
		if err := <-p.done; err != nil {
			t.Errorf("VM ended with %v", err)
		}
		vm.Close()
	})
	return p
}

// tick waits for the next tick line, failing unless verify=ok; it returns
// the tick number and when the test saw it.
func (p *inProcessVM) tick(t *testing.T, d time.Duration) (uint64, time.Time) {
	t.Helper()
	m := p.serial.wait(t, tickRE, d)
	if m[4] != "ok" {
		t.Fatalf("guest verification failed: %v", m)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n, time.Now()
}

// copyRAM copies the guest pages the source's memfd holds into dst,
// skipping holes (SEEK_DATA/SEEK_HOLE) and zero pages, so a mostly idle
// 6 GiB guest costs the host only what it uses. It returns the bytes
// copied below and above the 4 GiB boundary's memfd offset.
func copyRAM(t *testing.T, src, dst *memory.Guest) (low, high uint64) {
	t.Helper()
	fd, size := src.Fd(), int64(src.Size())
	from, to := src.Host(), dst.Host()
	zero := make([]byte, memory.PageSize)
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for p := data; p < hole; p += memory.PageSize {
			page := from[p : p+memory.PageSize]
			if bytes.Equal(page, zero) {
				continue
			}
			copy(to[p:], page)
			if p >= memory.LowRAMTop {
				high += memory.PageSize
			} else {
				low += memory.PageSize
			}
		}
		off = hole
	}
	return low, high
}

// TestStateSaveRestore boots a guest in one VM, saves it while it runs
// its workloads, and restores it into an incoming VM with a copy of its
// RAM: the guest must tick on from the same count with its memory
// verified, at its usual pace (the TSC continued sanely); then the source
// must resume too, as after a failed migration.
func TestStateSaveRestore(t *testing.T) {
	needKVM(t, "TestStateSaveRestore (save a 1 GiB guest, restore it into an incoming VM)")
	testSaveRestore(t, 1<<30, stateWorkload)
}

// TestStateSaveRestore6G does the same with 6 GiB and a working set
// larger than the 3 GiB below the MMIO hole, so live, verified guest data
// sits in the RAM region above 4 GiB.
func TestStateSaveRestore6G(t *testing.T) {
	needKVM(t, "TestStateSaveRestore6G (save and restore a 6 GiB guest, RAM above 4 GiB)")
	if err := memory.FitsHost(14 << 30); err != nil {
		t.Skipf("SKIPPED (host memory): TestStateSaveRestore6G did not run: %v", err)
	}
	low, high := testSaveRestore(t, 6<<30, "workload=hog:256,dirty:3200@32,kv:16")
	if high < 100<<20 || low == 0 {
		t.Errorf("copied %d MiB below the hole and %d MiB above: the test does not reach RAM above 4 GiB", low>>20, high>>20)
	}
}

// testSaveRestore runs the save/restore scenario and returns how much guest
// RAM it copied below and above the 32-bit MMIO hole.
func testSaveRestore(t *testing.T, size uint64, cmdline string) (low, high uint64) {
	_, guest := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), slow(4*time.Minute))
	defer cancel()
	src := runInProcess(t, ctx, vmm.Config{Kernel: guest, Memory: size, CPUs: 1, Cmdline: cmdline})
	src.serial.wait(t, regexp.MustCompile(`^ready`), 90*time.Second)
	for range 3 {
		src.tick(t, 10*time.Second)
	}
	// A free page hint session the guest answered: it holds the hinted
	// blocks until DONE, which the target must send after LoadState.
	hintID, err := src.vm.Balloon().StartHintContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, slow(10*time.Second))
	sum, err := src.vm.Balloon().WaitHint(wctx)
	wcancel()
	if err != nil || sum.Ranges == 0 {
		t.Fatalf("hint session %#x: %+v, %v", hintID, sum, err)
	}
	last, _ := src.tick(t, 10*time.Second)
	if err := src.vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	saving := time.Now()
	blob, err := src.vm.SaveState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state blob: %d bytes in %v", len(blob), time.Since(saving))

	dst := runInProcess(t, ctx, vmm.Config{Incoming: true, Memory: size, CPUs: 1})
	if err := dst.vm.Resume(); err == nil {
		t.Fatal("an incoming VM resumed before LoadState")
	}
	low, high = copyRAM(t, src.vm.Memory(), dst.vm.Memory())
	t.Logf("copied %d MiB of guest RAM below the MMIO hole, %d MiB above 4 GiB", low>>20, high>>20)
	if err := dst.vm.LoadState(ctx, blob); err != nil {
		t.Fatal(err)
	}
	if st := dst.vm.Status().State; st != vmm.StatePaused {
		t.Fatalf("after LoadState the VM is %s, want paused", st)
	}
	if err := dst.vm.LoadState(ctx, blob); err == nil {
		t.Fatal("LoadState accepted twice")
	}
	resumed := time.Now()
	if err := dst.vm.Resume(); err != nil {
		t.Fatal(err)
	}
	checkTicksContinue(t, dst, last, resumed)
	checkTSC(t, ctx, dst.vm, blob, saving, resumed)
	if err := dst.vm.Resume(); err != nil {
		t.Fatal(err)
	}
	dst.tick(t, 10*time.Second)
	// The target sent DONE: the guest took its hinted blocks back. The
	// next session id follows the source's, never reusing one.
	dst.saw(t, balloonDoneRE)
	if id, err := dst.vm.Balloon().StartHintContext(ctx); err != nil || id != hintID+1 {
		t.Errorf("target's next hint id %#x (%v), want %#x", id, err, hintID+1)
	}
	if _, err := dst.vm.Balloon().StopHintContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.vm.Balloon().DoneHintContext(ctx); err != nil {
		t.Fatal(err)
	}

	// The source was only paused: it runs on as if nothing happened, and
	// gets its blocks back with DONE, as after a failed migration.
	if err := src.vm.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.vm.Balloon().DoneHintContext(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := src.tick(t, 10*time.Second); n != last+1 && n != last+2 {
		t.Fatalf("source resumed at tick %d after %d", n, last)
	}
	src.tick(t, 10*time.Second)
	src.saw(t, balloonDoneRE)
	return low, high
}

var balloonDoneRE = regexp.MustCompile(`^balloon: done released=\d+`)

// saw checks that the guest printed a line matching re, now or within a
// few seconds.
func (p *inProcessVM) saw(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		p.serial.mu.Lock()
		for _, l := range p.serial.all {
			if re.MatchString(l) {
				p.serial.mu.Unlock()
				return
			}
		}
		p.serial.mu.Unlock()
	}
	t.Fatalf("the guest printed no line matching %q", re)
}

// checkTicksContinue checks that the restored guest's ticks carry on from
// last, every one verified, at a second's pace. The guest schedules tick
// n+1 one second after tick n was due, then verifies all its memory before
// printing, so single gaps vary with the verify time (the first verify on
// the target faults in every page); the pace over several ticks does not.
func checkTicksContinue(t *testing.T, p *inProcessVM, last uint64, resumed time.Time) {
	t.Helper()
	n, at := p.tick(t, 10*time.Second)
	// The source may have stopped in the middle of printing tick last+1:
	// the restored guest then finishes that line and ticks last+2 next.
	if n != last+1 && n != last+2 {
		t.Fatalf("restored guest printed tick %d; the source's last was %d", n, last)
	}
	t.Logf("restored guest: tick %d %v after resume (source's last tick %d)", n, at.Sub(resumed).Round(time.Millisecond), last)
	if d := at.Sub(resumed); d > 5*time.Second {
		t.Errorf("first tick %v after resume: the guest's TSC went backwards or stalled", d)
	}
	first, start := n, at
	for range 4 {
		m, next := p.tick(t, 10*time.Second)
		if m != n+1 {
			t.Fatalf("tick %d after %d", m, n)
		}
		if gap := next.Sub(at); gap > 2500*time.Millisecond {
			t.Errorf("ticks %d and %d %v apart, want about 1 s", n, m, gap)
		}
		n, at = m, next
	}
	if d := at.Sub(start); d < 2500*time.Millisecond || d > 6*time.Second {
		t.Errorf("ticks %d to %d took %v, want about %d s", first, n, d, n-first)
	}
}

// guestTSC returns vCPU 0's TSC and rate from a state blob.
func guestTSC(t *testing.T, blob []byte) (tsc uint64, khz uint32) {
	t.Helper()
	secs, err := state.Decode(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.Type != state.SecVCPU || s.ID != 0 {
			continue
		}
		var vs vcpu.State
		if err := vs.UnmarshalBinary(s.Data); err != nil {
			t.Fatal(err)
		}
		for _, m := range vs.MSRs {
			if m.Index == x86.MSRTSC {
				return m.Data, vs.TSCKHz
			}
		}
	}
	t.Fatal("no TSC in the state blob")
	return 0, 0
}

// checkTSC pauses the restored VM and compares how far its TSC moved since
// the source's save with wall time: at least as long as the guest ran on
// the target, at most the time since the save. So the TSC continued from
// the saved value, with no step back (a TSC reset to the target's would
// stall the guest's pacing) and no jump beyond the real elapsed time.
//
// KVM with TSC offsetting holds the TSC still in transit (the lower end);
// PVM here ignores TSC writes, so the guest's TSC is the host's and moves
// on with wall time in transit too (the upper end; LoadState logs it).
func checkTSC(t *testing.T, ctx context.Context, vm *vmm.VM, saved []byte, saving, resumed time.Time) {
	t.Helper()
	before := time.Now()
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	now, err := vm.SaveState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tsc0, khz := guestTSC(t, saved)
	tsc1, _ := guestTSC(t, now)
	if khz == 0 || tsc1 < tsc0 {
		t.Fatalf("TSC went from %d to %d (%d kHz)", tsc0, tsc1, khz)
	}
	ran := time.Duration(float64(tsc1-tsc0) / float64(khz) * float64(time.Millisecond))
	lo, hi := before.Sub(resumed)-200*time.Millisecond, after.Sub(saving)+200*time.Millisecond
	t.Logf("guest TSC advanced %v since the save; the guest ran %v on the target, %v passed since the save",
		ran.Round(time.Millisecond), before.Sub(resumed).Round(time.Millisecond), after.Sub(saving).Round(time.Millisecond))
	if ran < lo || ran > hi {
		t.Errorf("guest TSC advanced %v on the target, want between %v and %v", ran, lo, hi)
	}
}
