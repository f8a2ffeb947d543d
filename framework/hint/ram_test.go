package hint_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

const page = hint.PageSize

// sparseVM is 64 MiB of guest RAM in two regions of one memfd (32 MiB at
// GPA 0 from offset 0, 32 MiB at 4 GiB from offset 32 MiB), with data
// written with pwrite in the pages of written (page indices), the rest
// never touched.
func sparseVM(t *testing.T, written ...uint64) hint.VM {
	t.Helper()
	f := plugintest.Memfd(t, "ferry-ramview", 64<<20)
	vm := hint.VM{ID: "sparse", Files: []*os.File{f}, RAM: []hint.Region{
		{GPA: 0, Size: 32 << 20, File: 0, Offset: 0},
		{GPA: 4 << 30, Size: 32 << 20, File: 0, Offset: 32 << 20},
	}}
	for _, p := range written {
		b := make([]byte, page)
		b[0], b[page-1] = byte(p), 0xff
		if _, err := f.WriteAt(b, int64(p*page)); err != nil {
			t.Fatal(err)
		}
	}
	return vm
}

// resident is how many bytes of f the host holds (st_blocks).
func resident(t *testing.T, vm hint.VM) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(vm.Files[0].Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestScanLeavesHolesAlone: a scan over 64 MiB of sparse guest RAM
// reads exactly the written pages and leaves the memfd's resident size
// unchanged; reading the same RAM through a MAP_SHARED mapping, as a
// provider might, allocates every page it reads (the finding documented
// on hint.RAMView).
func TestScanLeavesHolesAlone(t *testing.T) {
	written := []uint64{0, 1, 2, 100, 8191, 8192, 8193, 12000, 16383}
	vm := sparseVM(t, written...)
	before := resident(t, vm)
	if before != int64(len(written))*page {
		t.Fatalf("%d bytes resident before the scan, want %d", before, len(written)*page)
	}
	var got []uint64
	for _, v := range vm.Regions() {
		err := v.Scan(context.Background(), func(first uint64, data []byte) error {
			for i := 0; i < len(data)/page; i++ {
				p := first + uint64(i)
				if data[i*page] != byte(p) || data[i*page+page-1] != 0xff {
					return fmt.Errorf("page %d holds %d...%d", p, data[i*page], data[i*page+page-1])
				}
				got = append(got, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(written) {
		t.Errorf("scanned pages %v, want %v", got, written)
	}
	if after := resident(t, vm); after != before {
		t.Errorf("the scan changed the resident size from %d to %d bytes", before, after)
	}
	// A hole read with ReadAt (pread) is zeros and allocates nothing.
	b := make([]byte, 1<<20)
	if n, err := vm.Regions()[1].ReadAt(b, 8<<20); n != len(b) || err != nil {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if after := resident(t, vm); after != before {
		t.Errorf("ReadAt of a hole changed the resident size from %d to %d bytes", before, after)
	}

	// The trap: the same hole read through a shared mapping is allocated.
	m, err := unix.Mmap(int(vm.Files[0].Fd()), 0, 64<<20, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	var sum byte
	for off := 0; off < 16<<20; off += page {
		sum += m[off]
	}
	grown := resident(t, vm) - before
	t.Logf("reading 16 MiB through a MAP_SHARED mapping made %d MiB resident (sum %d)", grown>>20, sum)
	if grown < 15<<20 {
		t.Errorf("reading 16 MiB of holes through a mapping made only %d bytes resident: the documented trap is gone; update hint.RAMView's doc", grown)
	}
}

// TestRegions: first page indices and the GPA <-> page conversions of
// the views and of VM agree.
func TestRegions(t *testing.T) {
	vm := sparseVM(t)
	vs := vm.Regions()
	if len(vs) != 2 || vs[0].First != 0 || vs[1].First != 8192 || vs[1].Pages() != 8192 || vs[1].End() != 16384 || vs[1].Index != 1 {
		t.Fatalf("views %+v", vs)
	}
	for _, c := range []struct {
		gpa, page uint64
		region    int
	}{{0, 0, 0}, {32<<20 - 1, 8191, 0}, {4 << 30, 8192, 1}, {4<<30 + 5*page + 7, 8197, 1}, {4<<30 + 32<<20 - 1, 16383, 1}} {
		v := vs[c.region]
		p, ok := v.Page(c.gpa)
		q, ok2 := vm.Page(c.gpa)
		g, ok3 := v.PageGPA(c.page)
		h, ok4 := vm.GPA(c.page)
		if !ok || !ok2 || !ok3 || !ok4 || p != c.page || q != c.page || g != c.gpa/page*page || h != g {
			t.Errorf("%#x: view page %d %v, vm page %d %v, view gpa %#x %v, vm gpa %#x %v; want page %d",
				c.gpa, p, ok, q, ok2, g, ok3, h, ok4, c.page)
		}
	}
	for _, gpa := range []uint64{32 << 20, 4<<30 - 1, 4<<30 + 32<<20} {
		if _, ok := vm.Page(gpa); ok {
			t.Errorf("gpa %#x is not RAM", gpa)
		}
	}
	if _, ok := vs[0].Page(4 << 30); ok {
		t.Error("region 0 claims region 1's address")
	}
	if _, ok := vs[0].PageGPA(8192); ok {
		t.Error("region 0 claims region 1's page")
	}
	if _, ok := vm.GPA(16384); ok {
		t.Error("page 16384 is past RAM")
	}
	if n, err := vs[0].ReadAt(make([]byte, 2*page), 32<<20-page); n != page || !errors.Is(err, io.EOF) {
		t.Errorf("read across the region's end: %d, %v; want %d, EOF", n, err, page)
	}
	bad := hint.VM{RAM: vm.RAM}.Regions()[0]
	if err := bad.Data(context.Background(), func(uint64, uint64) error { return nil }); err == nil {
		t.Error("a view without its file read something")
	}
}

// TestDataRuns: Data reports populated runs as page ranges clipped to
// the region, and stops on fn's error or the context's.
func TestDataRuns(t *testing.T) {
	vm := sparseVM(t, 3, 4, 5, 8191, 8192, 9000)
	var runs []hint.Range
	for _, v := range vm.Regions() {
		if err := v.Data(context.Background(), func(first, count uint64) error {
			runs = append(runs, hint.Range{First: first, Count: count})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := []hint.Range{{3, 3}, {8191, 1}, {8192, 1}, {9000, 1}}
	if fmt.Sprint(runs) != fmt.Sprint(want) {
		t.Errorf("runs %v, want %v", runs, want)
	}
	stop := errors.New("stop")
	if err := vm.Regions()[1].Data(context.Background(), func(uint64, uint64) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := vm.Regions()[0].Scan(ctx, func(uint64, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled scan: %v", err)
	}
}

// TestAnswerBy: the default margin is a tenth of the time left, within
// MinMargin and MaxMargin; an explicit one is kept; no deadline, none.
func TestAnswerBy(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		left, margin, want time.Duration
	}{
		{300 * time.Millisecond, 0, 30 * time.Millisecond},
		{5 * time.Millisecond, 0, hint.MinMargin},
		{10 * time.Second, 0, hint.MaxMargin},
		{time.Second, 200 * time.Millisecond, 200 * time.Millisecond},
	} {
		r := hint.Request{Deadline: now.Add(c.left)}
		got := r.Deadline.Sub(r.AnswerBy(c.margin))
		if d := got - c.want; d < -2*time.Millisecond || d > 2*time.Millisecond {
			t.Errorf("%v left, margin %v: answers %v early, want %v", c.left, c.margin, got, c.want)
		}
	}
	if !(hint.Request{}).AnswerBy(0).IsZero() {
		t.Error("a request without a deadline has an AnswerBy")
	}
	ctx, cancel := hint.Request{Deadline: now.Add(time.Second)}.Context(context.Background(), 100*time.Millisecond)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(now.Add(900*time.Millisecond)) {
		t.Errorf("context deadline %v %v", dl, ok)
	}
}
