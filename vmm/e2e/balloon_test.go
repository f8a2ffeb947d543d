package e2e

import (
	"bufio"
	"context"
	"io"
	"math/bits"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/memory"
)

// lineWriter turns the guest's serial output into lines on a channel.
type lineWriter struct {
	pw    *io.PipeWriter
	lines chan string
	mu    sync.Mutex
	all   []string
}

func newLineWriter() *lineWriter {
	pr, pw := io.Pipe()
	w := &lineWriter{pw: pw, lines: make(chan string, 4096)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.mu.Lock()
			w.all = append(w.all, sc.Text())
			w.mu.Unlock()
			select {
			case w.lines <- sc.Text():
			default:
			}
		}
	}()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }

// wait returns the first line matching re within d (a hang guard,
// stretched by slow), failing otherwise.
func (w *lineWriter) wait(t testing.TB, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	d = slow(d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l := <-w.lines:
			if strings.Contains(l, "verify=FAIL") || strings.Contains(l, "ASSERT") {
				t.Fatalf("guest reported: %s", l)
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timer.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no line matching %q within %v; guest said:\n%s", re, d, strings.Join(w.all, "\n"))
		}
	}
}

// runGuest runs the test guest in this process with cfg (one vCPU; the
// kernel and serial filled in) and returns the VM, its serial lines and a
// context that bounds the test (two minutes); the VM stops when the test
// ends.
func runGuest(t *testing.T, cfg vmm.Config) (*vmm.VM, *lineWriter, context.Context) {
	t.Helper()
	_, guest := binaries(t)
	serial := newLineWriter()
	cfg.Kernel, cfg.CPUs, cfg.Serial = guest, 1, serial
	vm, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), slow(120*time.Second))
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { _, err := vm.Run(ctx); done <- err }()
	t.Cleanup(func() { vm.Stop(); <-done })
	return vm, serial, ctx
}

// hintBitmap records hinted pages by memfd page number.
type hintBitmap struct {
	mem   *memory.Guest
	bits  []uint64
	pages int
}

func (h *hintBitmap) HintRange(_ uint32, gpa, n uint64) {
	for _, r := range h.mem.Regions() {
		if r.Contains(gpa, n) {
			for p := (r.Offset + gpa - r.GPA) / 4096; p < (r.Offset+gpa-r.GPA+n)/4096; p++ {
				h.bits[p/64] |= 1 << (p % 64)
				h.pages++
			}
		}
	}
}

// TestHintedRangesStayClean runs a churning guest, takes a free page hint
// session from Ferry's balloon device, and checks with KVM's dirty log
// that no hinted page is written until DONE, and that the guest keeps
// verifying its memory after it took the pages back.
func TestHintedRangesStayClean(t *testing.T) {
	needKVM(t, "TestHintedRangesStayClean (balloon hints vs the KVM dirty log)")
	vm, serial, ctx := runGuest(t, vmm.Config{Memory: 1 << 30, Cmdline: "workload=hog:256,kv:32"})
	serial.wait(t, regexp.MustCompile(`^ready`), 60*time.Second)

	hinted := &hintBitmap{mem: vm.Memory(), bits: make([]uint64, vm.DirtyWords())}
	dev := vm.Balloon()
	if err := dev.SetHintSinkContext(ctx, hinted); err != nil {
		t.Fatal(err)
	}
	if err := vm.EnableDirtyLog(); err != nil {
		t.Fatal(err)
	}
	id, err := dev.StartHintContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, slow(10*time.Second))
	sum, err := dev.WaitHint(wctx)
	wcancel()
	if err != nil || sum.Ranges == 0 {
		t.Fatalf("hint session %#x: %+v, %v", id, sum, err)
	}
	// Dirty-log epoch starts now: let the guest churn, then look.
	dirty := make([]uint64, vm.DirtyWords())
	if err := vm.SyncDirtyLog(dirty); err != nil {
		t.Fatal(err)
	}
	clear(dirty)
	serial.wait(t, regexp.MustCompile(`^tick`), 10*time.Second)
	serial.wait(t, regexp.MustCompile(`^tick`), 10*time.Second)
	if err := vm.SyncDirtyLog(dirty); err != nil {
		t.Fatal(err)
	}
	written, clash := 0, 0
	for i := range dirty {
		written += bits.OnesCount64(dirty[i])
		clash += bits.OnesCount64(dirty[i] & hinted.bits[i])
	}
	t.Logf("session %#x: %d ranges, %d MiB hinted; %d pages written meanwhile", id, sum.Ranges, sum.Bytes>>20, written)
	if written == 0 {
		t.Fatal("no page written in two ticks: the dirty log is not working")
	}
	if clash != 0 {
		t.Fatalf("%d hinted pages were written before DONE", clash)
	}
	if sum.Bytes < 600<<20 {
		t.Errorf("only %d MiB hinted of a 1 GiB guest with ~100 MiB live", sum.Bytes>>20)
	}
	if _, err := dev.StopHintContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.DoneHintContext(ctx); err != nil {
		t.Fatal(err)
	}
	serial.wait(t, regexp.MustCompile(`^balloon: done released=`), 10*time.Second)
	for i := 0; i < 2; i++ {
		if m := serial.wait(t, tickRE, 10*time.Second); m[4] != "ok" {
			t.Fatalf("verify after DONE: %v", m)
		}
	}
}
