package pagemap

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

// BenchmarkPagemap classifies an 8 GiB guest: never touched, and with 5%
// of its pages written at random places (about 100 000 data extents,
// the worst case for lseek: one pair of calls per extent), mapped
// MAP_SHARED or MAP_PRIVATE by "the VMM" (this process).
func BenchmarkPagemap(b *testing.B) {
	const size = 8 << 30
	const pages = size / pageSize
	untouched := newMemfd(b, size)
	_, untouchedAddr := mmapFile(b, int(untouched.Fd()), size, unix.MAP_SHARED)

	shared := newMemfd(b, size)
	m, sharedAddr := mmapFile(b, int(shared.Fd()), size, unix.MAP_SHARED)
	private := newMemfd(b, size)
	pm, privateAddr := mmapFile(b, int(private.Fd()), size, unix.MAP_PRIVATE)
	r := rand.New(rand.NewPCG(1, 2))
	written := 0
	for p := range uint64(pages) {
		if r.IntN(20) == 0 {
			m[p*pageSize] = 1
			pm[p*pageSize] = 1 // copy-on-write: the file stays a hole
			written++
		}
	}
	b.Logf("8 GiB, %d pages (%.1f%%) written", written, 100*float64(written)/pages)

	vm := func(f *os.File, addr uint64) hint.VM {
		return hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: size, HostAddr: addr}}}
	}
	for _, c := range []struct {
		name   string
		vm     hint.VM
		method string
		noScan bool
	}{
		{"untouched/auto", vm(untouched, untouchedAddr), MethodAuto, false},
		{"untouched/pagemap", vm(untouched, untouchedAddr), MethodPagemap, false},
		{"5pct-shared/auto", vm(shared, sharedAddr), MethodAuto, false},
		{"5pct-shared/pagemap", vm(shared, sharedAddr), MethodPagemap, false},
		{"5pct-shared/pagemap-entries", vm(shared, sharedAddr), MethodPagemap, true},
		{"5pct-private/auto", vm(private, privateAddr), MethodAuto, false},
		{"5pct-private/auto-entries", vm(private, privateAddr), MethodAuto, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := configure(b, c.method, c.vm)
			if c.noScan {
				p.s.res.vm.scan = nil
			}
			var zero, ranges uint64
			emit := func(rs []hint.Range) error {
				for _, r := range rs {
					zero += r.Count
				}
				ranges += uint64(len(rs))
				return nil
			}
			n := 0
			for b.Loop() {
				zero, ranges = 0, 0
				if err := p.Hints(context.Background(), hint.Request{}, emit); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(n), "ms/classification")
			b.ReportMetric(float64(ranges), "ranges")
			b.ReportMetric(100*float64(zero)/pages, "%zero")
		})
	}
}
