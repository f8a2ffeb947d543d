package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/memory"
)

// BenchmarkBootToFirstTick measures `ferry-vmm run` to the guest's first
// tick line, and the host memory (shared, i.e. guest RAM) the VMM holds
// then. Target: under 1 s for 8 GiB, and an idle guest costs almost nothing.
func BenchmarkBootToFirstTick(b *testing.B) {
	needKVM(b, "BenchmarkBootToFirstTick")
	_, guest := binaries(b)
	for _, mem := range []string{"1G", "8G"} {
		b.Run(mem, func(b *testing.B) {
			var total time.Duration
			var shmem float64
			for i := 0; i < b.N; i++ {
				start := time.Now()
				r := startVMM(b, "-kernel", guest, "-mem", mem, "-cmdline", "workload=idle")
				r.waitLine(tickRE, 60*time.Second)
				total += time.Since(start)
				shmem += float64(rssShmemKiB(b, r.cmd.Process.Pid)) / 1024
				r.kill()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-tick")
			b.ReportMetric(shmem/float64(b.N), "guest-RAM-MiB-resident")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkHogTouchRate reports the rate at which the guest's hog workload
// writes fresh memory (target: at least 1 GB/s, native ring-3 speed).
func BenchmarkHogTouchRate(b *testing.B) {
	needKVM(b, "BenchmarkHogTouchRate")
	_, guest := binaries(b)
	hogRE := regexp.MustCompile(`^hog: touched (\d+) MiB in (\d+) ms \((\d+) MB/s\)`)
	var rate float64
	for i := 0; i < b.N; i++ {
		r := startVMM(b, "-kernel", guest, "-mem", "2G", "-cmdline", "workload=hog:1536")
		m := r.waitLine(hogRE, 120*time.Second)
		v, _ := strconv.ParseFloat(m[3], 64)
		rate += v
		r.kill()
	}
	b.ReportMetric(rate/float64(b.N), "MB/s")
	b.ReportMetric(0, "ns/op")
}

// rssShmemKiB reads RssShmem (resident shared memory: touched guest RAM)
// of a process.
func rssShmemKiB(tb testing.TB, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssShmem:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// BenchmarkHintSession measures a free page hint session on a mostly free
// guest: from StartHintContext to the guest's STOP (target: 8 GiB in < 100 ms).
func BenchmarkHintSession(b *testing.B) {
	needKVM(b, "BenchmarkHintSession")
	_, guest := binaries(b)
	for _, size := range []uint64{1 << 30, 8 << 30} {
		b.Run(memory.FormatSize(size), func(b *testing.B) {
			serial := newLineWriter()
			vm, err := vmm.New(vmm.Config{Kernel: guest, Memory: size, CPUs: 1, Cmdline: "workload=idle", Serial: serial})
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { vm.Run(ctx); close(done) }()
			defer func() { vm.Stop(); <-done }()
			serial.wait(b, regexp.MustCompile(`^ready`), 60*time.Second)
			dev := vm.Balloon()
			var total time.Duration
			var bytes uint64
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := dev.StartHintContext(ctx); err != nil {
					b.Fatal(err)
				}
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				sum, err := dev.WaitHint(wctx)
				wcancel()
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				bytes += sum.Bytes
				if _, err := dev.StopHintContext(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := dev.DoneHintContext(ctx); err != nil {
					b.Fatal(err)
				}
				serial.wait(b, regexp.MustCompile(`^balloon: done released=`), 30*time.Second)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/session")
			b.ReportMetric(float64(bytes>>20)/float64(b.N), "MiB-hinted")
			b.ReportMetric(0, "ns/op")
		})
	}
}
