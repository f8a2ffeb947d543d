package vmtest_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// idleData is what an idle guest of any size holds in these benchmarks:
// its first idleData bytes written (a booted kernel and its caches); the
// rest of its RAM was never touched and is a hole in the memfd.
const idleData = 64 << 20

// BenchmarkIdleGrowth is issue 11's "cost as guests grow" without KVM:
// idle guests of 1, 8 and 32 GiB (sparse memfd RAM, idleData of it
// written, nothing written during the migration), migrated over the real
// TCP plugin processes (TLS, 2 streams, no hint provider) as a VMM
// embeds Ferry. It reports the source's total and bulk time, the CPU of
// this process (both engines: the source's classifier and dirty-log
// bitmaps, the destination's messages), of each plugin process, and the
// peak resident memory (VmHWM) of each plugin and the growth of this
// process's. What it cannot show: a real VMM's dirty log (KVM_GET_DIRTY_LOG
// or KVM_CLEAR_DIRTY_LOG over all of RAM), which needs /dev/kvm.
// docs/BENCHMARKS.md records its figures; `make bench` runs it.
func BenchmarkIdleGrowth(b *testing.B) {
	for _, gib := range []uint64{1, 8, 32} {
		b.Run(fmt.Sprintf("%dGiB", gib), func(b *testing.B) {
			var f growthFigures
			for b.Loop() {
				f.add(growthOnce(b, gib<<30))
			}
			f.report(b)
		})
	}
}

type growthFigures struct {
	n                                 int
	total, bulk, engines, src, dst    time.Duration
	srcPeak, dstPeak, enginesPeakGrow uint64 // bytes
}

func (f *growthFigures) add(g growthFigures) {
	f.n++
	f.total += g.total
	f.bulk += g.bulk
	f.engines += g.engines
	f.src += g.src
	f.dst += g.dst
	f.srcPeak = max(f.srcPeak, g.srcPeak)
	f.dstPeak = max(f.dstPeak, g.dstPeak)
	f.enginesPeakGrow = max(f.enginesPeakGrow, g.enginesPeakGrow)
}

func (f *growthFigures) report(b *testing.B) {
	n := float64(f.n)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(ms(f.total), "total-ms/op")
	b.ReportMetric(ms(f.bulk), "bulk-ms/op")
	b.ReportMetric(ms(f.engines), "engines-cpu-ms/op")
	b.ReportMetric(ms(f.src), "src-plugin-cpu-ms/op")
	b.ReportMetric(ms(f.dst), "dst-plugin-cpu-ms/op")
	b.ReportMetric(float64(f.srcPeak)/(1<<20), "src-plugin-peak-MiB")
	b.ReportMetric(float64(f.dstPeak)/(1<<20), "dst-plugin-peak-MiB")
	b.ReportMetric(float64(f.enginesPeakGrow)/(1<<20), "engines-peak-grow-MiB")
}

// growthOnce migrates one idle guest of size bytes and checks that the
// destination holds its data and nothing else.
func growthOnce(b *testing.B, size uint64) growthFigures {
	src, dst := newIdleVM(b, size, idleData), newIdleVM(b, size, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ss, ds, spid, dpid := openPluginPair(ctx, b, src.RAM(), dst.RAM(), false)
	defer ss.Close()
	defer ds.Close()

	resetPeak(b)
	rss0 := vmKiB(b, os.Getpid(), "VmHWM")
	cpu0, scpu0, dcpu0 := plugintest.SelfCPU(), plugintest.CPU(b, spid), plugintest.CPU(b, dpid)
	var derr error
	var drep engine.Report
	var wg sync.WaitGroup
	wg.Go(func() { drep, derr = ds.Receive(ctx, dst) })
	rep, serr := ss.Send(ctx, src, nil)
	wg.Wait()
	if serr != nil || derr != nil || rep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		b.Fatalf("source %s (%v), destination %s (%v)", rep.Status, serr, drep.Status, derr)
	}
	g := growthFigures{
		total: time.Duration(rep.TotalMS) * time.Millisecond, bulk: time.Duration(rep.BulkMS) * time.Millisecond,
		engines: plugintest.SelfCPU() - cpu0, src: plugintest.CPU(b, spid) - scpu0, dst: plugintest.CPU(b, dpid) - dcpu0,
		srcPeak: vmKiB(b, spid, "VmHWM") << 10, dstPeak: vmKiB(b, dpid, "VmHWM") << 10,
		enginesPeakGrow: (max(rss0, vmKiB(b, os.Getpid(), "VmHWM")) - rss0) << 10,
	}
	if err := sameSparse(src, dst); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d GiB: total %d ms (connect %d, bulk %d, switch-over %d), %d data pages, %d zero, wire %.1f MiB",
		size>>30, rep.TotalMS, rep.ConnectMS, rep.BulkMS, rep.SwitchoverMS, rep.PagesSent, rep.PagesZero, float64(rep.BytesWire)/(1<<20))
	return g
}

// resetPeak resets this process's VmHWM to its current resident size.
func resetPeak(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
}

// vmKiB reads field (VmHWM, VmRSS) of /proc/pid/status, in KiB.
func vmKiB(b *testing.B, pid int, field string) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s of %d: %q", field, pid, line)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// idleVM is an idle guest with sparse RAM: one memfd, its first data
// bytes written with random data once, never written again (its dirty
// log stays empty). It is both a framework.Source and a Target.
type idleVM struct {
	layout framework.Layout
	mem    []byte
	state  []byte
}

func newIdleVM(b *testing.B, size, data uint64) *idleVM {
	fd, err := unix.MemfdCreate("idle-ram", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		b.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(mem); unix.Close(fd) })
	rng := rand.New(rand.NewPCG(size, data))
	for i := uint64(0); i+8 <= data; i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			mem[i+uint64(k)] = byte(v >> (8 * k))
		}
	}
	return &idleVM{layout: framework.Layout{{GPA: 0, Size: size, Fd: fd}}, mem: mem, state: []byte("idle-state")}
}

func (v *idleVM) RAM() framework.Layout                       { return v.layout }
func (v *idleVM) Memory(int) []byte                           { return v.mem }
func (v *idleVM) StartDirtyLog() error                        { return nil }
func (v *idleVM) SyncDirtyLog(*bitmap.Bitmap) error           { return nil } // idle: nothing written
func (v *idleVM) StopDirtyLog() error                         { return nil }
func (v *idleVM) Pause(context.Context) error                 { return nil }
func (v *idleVM) Resume() error                               { return nil }
func (v *idleVM) SaveState(context.Context) ([]byte, error)   { return v.state, nil }
func (v *idleVM) LoadState(_ context.Context, s []byte) error { v.state = bytes.Clone(s); return nil }

// sameSparse checks that dst's memfd has data exactly where src's has
// (SEEK_DATA/SEEK_HOLE extents; the source's data is random, so no page
// of it is zero) with the same bytes, reading only the data: a read
// through the mapping would fill the holes.
func sameSparse(src, dst *idleVM) error {
	if !bytes.Equal(src.state, dst.state) {
		return fmt.Errorf("state %q arrived as %q", src.state, dst.state)
	}
	se, de := extents(src.layout[0].Fd, src.layout[0].Size), extents(dst.layout[0].Fd, dst.layout[0].Size)
	if fmt.Sprint(se) != fmt.Sprint(de) {
		return fmt.Errorf("data extents: source %x, destination %x", se, de)
	}
	for _, e := range se {
		if !bytes.Equal(src.mem[e[0]:e[1]], dst.mem[e[0]:e[1]]) {
			return fmt.Errorf("data in [%#x, %#x) differs", e[0], e[1])
		}
	}
	return nil
}

// extents lists the data extents of fd below size.
func extents(fd int, size uint64) [][2]uint64 {
	var out [][2]uint64
	for off := int64(0); off < int64(size); {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after off
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			h = int64(size)
		}
		out = append(out, [2]uint64{uint64(d), uint64(h)})
		off = h
	}
	return out
}
