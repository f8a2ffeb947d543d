package pagemap

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

var methods = []string{MethodAuto, MethodSeek, MethodPagemap}

// TestHolesExact: a known pattern of written pages in two regions of two
// files, mapped MAP_SHARED like a VMM maps guest RAM, gives exactly the
// complement, coalesced across the region boundary, with every method.
func TestHolesExact(t *testing.T) {
	const pages0, pages1 = 4096, 1024 // 16 MiB and 4 MiB
	f0, f1 := newMemfd(t, pages0*pageSize), newMemfd(t, 2*pages1*pageSize)
	m0, a0 := mmapFile(t, int(f0.Fd()), pages0*pageSize, unix.MAP_SHARED)
	_, a1 := mmapFile(t, int(f1.Fd()), 2*pages1*pageSize, unix.MAP_SHARED)
	written := []uint64{0, 5, 6, 7, 8, 9, 100, 511, 512, 513, 2047, 2048}
	for _, p := range written {
		m0[p*pageSize+1] = 1 // through the VMM's mapping
	}
	pwritePages(t, f0, 3000, 3001) // by pwrite: in the page cache, not mapped
	// Region 1 is the second half of f1; the first half is all written and
	// must not leak into region 1's answer.
	for p := uint64(0); p < pages1; p++ {
		pwritePages(t, f1, p)
	}
	pwritePages(t, f1, pages1+10)
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f0, f1}, RAM: []hint.Region{
		{GPA: 0, Size: pages0 * pageSize, HostAddr: a0, File: 0, Offset: 0},
		{GPA: 1 << 32, Size: pages1 * pageSize, HostAddr: a1 + pages1*pageSize, File: 1, Offset: pages1 * pageSize},
	}}
	set := setOf(append(written, 3000, 3001, pages0+10)...)
	want := complement(pages0+pages1, set)
	for _, m := range methods {
		t.Run(m, func(t *testing.T) {
			got, _ := collect(t, configure(t, m, vm))
			checkRanges(t, got, want)
		})
	}
}

// TestPunchedPages: pages punched out of the file (free page reporting,
// balloon inflation) are reported; their neighbours are not.
func TestPunchedPages(t *testing.T) {
	const pages = 2048
	f := newMemfd(t, pages*pageSize)
	m, addr := mmapFile(t, int(f.Fd()), pages*pageSize, unix.MAP_SHARED)
	for p := range uint64(pages) {
		m[p*pageSize] = byte(p) | 1
	}
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f},
		RAM: []hint.Region{{Size: pages * pageSize, HostAddr: addr}}}
	for _, m := range methods {
		p := configure(t, m, vm)
		if got, _ := collect(t, p); len(got) != 0 {
			t.Fatalf("%s: fully written RAM gave %v", m, got)
		}
	}
	punch(t, f, 10, 1)
	punch(t, f, 100, 412)   // 100..511
	punch(t, f, 1024, 1024) // to the end
	want := []hint.Range{{First: 10, Count: 1}, {First: 100, Count: 412}, {First: 1024, Count: 1024}}
	for _, m := range methods {
		t.Run(m, func(t *testing.T) {
			got, _ := collect(t, configure(t, m, vm))
			checkRanges(t, got, want)
		})
	}
}

// TestPageCacheButNotMapped is the reason pagemap alone is unsound for
// shared memory: a page written with pwrite is data in the page cache but
// not present in the VMM's page table. The page table really says "not
// present" on this kernel, and the provider still does not report it.
func TestPageCacheButNotMapped(t *testing.T) {
	const pages = 64
	f := newMemfd(t, pages*pageSize)
	_, addr := mmapFile(t, int(f.Fd()), pages*pageSize, unix.MAP_SHARED)
	pwritePages(t, f, 7)
	v, err := openVMPages(os.Getpid(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	pop, err := v.read(context.Background(), nil, addr, hint.Range{First: 0, Count: pages})
	if err != nil {
		t.Fatal(err)
	}
	if len(pop) != 0 {
		t.Fatalf("page tables show %v; the test needs page 7 absent from them", pop)
	}
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: pages * pageSize, HostAddr: addr}}}
	want := complement(pages, setOf(7))
	for _, m := range methods {
		got, _ := collect(t, configure(t, m, vm))
		checkRanges(t, got, want)
	}
}

// TestPrivateMapping: a VMM that maps guest RAM MAP_PRIVATE writes into
// copy-on-write pages the file never sees. Holes alone would report
// those pages; "seek" refuses the region, "auto" and "pagemap" veto them
// with the page tables, through PAGEMAP_SCAN and through plain entries.
func TestPrivateMapping(t *testing.T) {
	const pages = 1024
	f := newMemfd(t, pages*pageSize)
	pwritePages(t, f, 1, 2) // file data, before the mapping
	m, addr := mmapFile(t, int(f.Fd()), pages*pageSize, unix.MAP_PRIVATE)
	for _, p := range []uint64{3, 500, 501, 1023} {
		m[p*pageSize+9] = 0x5a // copy-on-write: anonymous pages
	}
	_ = m[600*pageSize] // a read of a hole: whatever it maps, it stays zero
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: pages * pageSize, HostAddr: addr}}}

	p := New(nil)
	err := p.Configure(context.Background(), hint.Config{"method": MethodSeek}, vm, nil)
	if !errors.Is(err, hint.ErrBadConfig) || !strings.Contains(err.Error(), "MAP_PRIVATE") {
		t.Fatalf("seek on a private mapping: %v", err)
	}
	written := setOf(1, 2, 3, 500, 501, 1023)
	for _, m := range []string{MethodAuto, MethodPagemap} {
		for _, scan := range []bool{true, false} {
			p := configure(t, m, vm)
			if !scan {
				p.s.res.vm.scan = nil
			}
			got, _ := collect(t, p)
			for _, r := range got {
				for q := r.First; q < r.First+r.Count; q++ {
					if written[q] {
						t.Fatalf("%s (scan %t): written page %d reported zero in %v", m, scan, q, got)
					}
				}
			}
			// Page 600 may be vetoed (mapped by the read), nothing else.
			if want := complement(pages, setOf(1, 2, 3, 500, 501, 600, 1023)); !covers(got, want) {
				t.Fatalf("%s (scan %t): %v does not cover %v", m, scan, got, want)
			}
		}
	}
}

// covers reports whether every page of want is in got.
func covers(got, want []hint.Range) bool { return len(subtract(want, got)) == 0 }

// TestMappingMismatch: a host address that maps something else than the
// region's file is refused with every method.
func TestMappingMismatch(t *testing.T) {
	f, other := newMemfd(t, 1<<20), newMemfd(t, 1<<20)
	_, addr := mmapFile(t, int(other.Fd()), 1<<20, unix.MAP_SHARED)
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: 1 << 20, HostAddr: addr}}}
	for _, m := range methods {
		err := New(nil).Configure(context.Background(), hint.Config{"method": m}, vm, nil)
		if err == nil || !strings.Contains(err.Error(), "not the RAM file") {
			t.Errorf("%s: %v", m, err)
		}
	}
	_, addr = mmapFile(t, int(f.Fd()), 1<<20, unix.MAP_SHARED)
	vm.RAM[0] = hint.Region{Size: 1<<20 - pageSize, HostAddr: addr, Offset: pageSize} // addr maps offset 0
	if err := New(nil).Configure(context.Background(), nil, vm, nil); err == nil || !strings.Contains(err.Error(), "maps file offset") {
		t.Errorf("offset mismatch: %v", err)
	}
}

// TestUnknownMapping: without PID or host address, "auto" and "seek"
// trust the contract, "pagemap" refuses.
func TestUnknownMapping(t *testing.T) {
	f := newMemfd(t, 1<<20)
	pwritePages(t, f, 0)
	vm := hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 1 << 20}}}
	for _, m := range []string{MethodAuto, MethodSeek} {
		got, _ := collect(t, configure(t, m, vm))
		checkRanges(t, got, []hint.Range{{First: 1, Count: 255}})
	}
	err := New(nil).Configure(context.Background(), hint.Config{"method": MethodPagemap}, vm, nil)
	if !errors.Is(err, hint.ErrBadConfig) {
		t.Fatalf("pagemap without a PID: %v", err)
	}
}

// TestConcurrentWrites: while the guest (a goroutine) keeps writing pages
// that were holes, a page written before the scan started is never
// reported; pages written during the scan may or may not be.
func TestConcurrentWrites(t *testing.T) {
	const pages = 1 << 16 // 256 MiB
	f := newMemfd(t, pages*pageSize)
	m, addr := mmapFile(t, int(f.Fd()), pages*pageSize, unix.MAP_SHARED)
	before := map[uint64]bool{}
	for p := uint64(0); p < pages; p += 7 {
		m[p*pageSize] = 1
		before[p] = true
	}
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: pages * pageSize, HostAddr: addr}}}
	for _, meth := range methods {
		t.Run(meth, func(t *testing.T) {
			p := configure(t, meth, vm)
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // writes holes only, through the mapping and with pwrite
				defer wg.Done()
				for q := uint64(3); !stop.Load(); q = (q + 7919) % pages {
					if before[q] {
						continue
					}
					if q%2 == 0 {
						f.WriteAt([]byte{2}, int64(q*pageSize))
					} else {
						m[q*pageSize+1] = 2
					}
				}
			}()
			for range 5 {
				got, _ := collect(t, p)
				for _, r := range got {
					for q := r.First; q < r.First+r.Count; q++ {
						if before[q] {
							stop.Store(true)
							wg.Wait()
							t.Fatalf("page %d, written before the scan, reported zero", q)
						}
					}
				}
			}
			stop.Store(true)
			wg.Wait()
		})
	}
}

// TestUntouchedRAM: 8 GiB never written are one range, found without
// reading them.
func TestUntouchedRAM(t *testing.T) {
	const size = 8 << 30
	f := newMemfd(t, size)
	_, addr := mmapFile(t, int(f.Fd()), size, unix.MAP_SHARED)
	vm := hint.VM{PID: os.Getpid(), Files: []*os.File{f}, RAM: []hint.Region{{Size: size, HostAddr: addr}}}
	for _, m := range methods {
		start := time.Now()
		got, calls := collect(t, configure(t, m, vm))
		checkRanges(t, got, []hint.Range{{First: 0, Count: size / pageSize}})
		t.Logf("%s: 8 GiB untouched classified in %v (%d emit)", m, time.Since(start), calls)
	}
}

// TestBatches: thousands of scattered holes arrive in several emits of at
// most hint.BatchRanges ranges, in order, never adjacent.
func TestBatches(t *testing.T) {
	const pages = 20000
	f := newMemfd(t, pages*pageSize)
	set := map[uint64]bool{}
	for p := uint64(0); p < pages; p += 3 {
		set[p] = true
		pwritePages(t, f, p)
	}
	vm := hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: pages * pageSize}}}
	got, calls := collect(t, configure(t, MethodAuto, vm))
	checkRanges(t, got, complement(pages, set))
	if want := (len(got) + hint.BatchRanges - 2) / (hint.BatchRanges - 1); calls < want {
		t.Fatalf("%d ranges in %d emits", len(got), calls)
	}
}

// TestHintsLifecycle: Hints before Configure and after Close fails; an
// emit error ends Hints with that error; Close stops a running Hints.
func TestHintsLifecycle(t *testing.T) {
	f := newMemfd(t, 1<<30)
	for p := uint64(0); p < 1<<18; p += 2 {
		pwritePages(t, f, p)
	}
	vm := hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 1 << 30}}}
	p := New(nil)
	nop := func([]hint.Range) error { return nil }
	if err := p.Hints(context.Background(), hint.Request{}, nop); !errors.Is(err, errNotConfigured) {
		t.Fatalf("Hints before Configure: %v", err)
	}
	if err := p.Configure(context.Background(), nil, vm, nil); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := p.Hints(context.Background(), hint.Request{}, func([]hint.Range) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("emit error: %v", err)
	}
	// Close from inside emit: Close waits for Hints only as long as its
	// context allows, and Hints stops at its next look at the context.
	closed := false
	err := p.Hints(context.Background(), hint.Request{}, func([]hint.Range) error {
		if !closed {
			closed = true
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			p.Close(ctx, true)
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Hints interrupted by Close: %v", err)
	}
	if err := p.Hints(context.Background(), hint.Request{}, nop); !errors.Is(err, errNotConfigured) {
		t.Fatalf("Hints after Close: %v", err)
	}
	// A new window opens after Close.
	if err := p.Configure(context.Background(), nil, vm, nil); err != nil {
		t.Fatal(err)
	}
	p.Close(context.Background(), true)
}

// TestConfigureErrors: what Configure refuses, and how it says so.
func TestConfigureErrors(t *testing.T) {
	f := newMemfd(t, 1<<20)
	good := hint.Region{Size: 1 << 20}
	for _, c := range []struct {
		name string
		cfg  hint.Config
		vm   hint.VM
		want string
	}{
		{"method", hint.Config{"method": "mincore"}, hint.VM{Files: []*os.File{f}, RAM: []hint.Region{good}}, "method must be"},
		{"attribute", hint.Config{"workers": int64(2)}, hint.VM{Files: []*os.File{f}, RAM: []hint.Region{good}}, "unknown attribute"},
		{"no RAM", nil, hint.VM{Files: []*os.File{f}}, "no RAM regions"},
		{"unaligned", nil, hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 1000}}}, "not page-aligned"},
		{"file index", nil, hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 1 << 20, File: 1}}}, "names file 1 of 1"},
		{"nil file", nil, hint.VM{Files: []*os.File{nil}, RAM: []hint.Region{good}}, "is nil"},
	} {
		err := New(nil).Configure(context.Background(), c.cfg, c.vm, nil)
		if !errors.Is(err, hint.ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadConfig with %q", c.name, err, c.want)
		}
	}
	vm := hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 2 << 20}}}
	if err := New(nil).Configure(context.Background(), nil, vm, nil); err == nil || !strings.Contains(err.Error(), "in a file of") {
		t.Errorf("region past the end of its file: %v", err)
	}
}

// TestOwnFileOffset: classification never moves the file offset of the
// description the VMM shares with the provider.
func TestOwnFileOffset(t *testing.T) {
	f := newMemfd(t, 1<<20)
	pwritePages(t, f, 5)
	if _, err := f.Seek(12345, 0); err != nil {
		t.Fatal(err)
	}
	collect(t, configure(t, MethodAuto, hint.VM{Files: []*os.File{f}, RAM: []hint.Region{{Size: 1 << 20}}}))
	if off, _ := f.Seek(0, 1); off != 12345 {
		t.Fatalf("the shared file offset moved to %d", off)
	}
}
