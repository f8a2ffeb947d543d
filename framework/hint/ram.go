package hint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
)

// PageSize is the size of a guest page in bytes (4 KiB): the unit of
// every Range. Page index p is bytes [p*PageSize, (p+1)*PageSize) of the
// RAM regions laid end to end in VM.RAM order, so region i's first page
// index is the sum of the earlier regions' Size/PageSize (RAMView.First).
const PageSize = framework.PageSize

// ScanChunk is the most Scan hands fn at once: 1 MiB, 256 pages.
const ScanChunk = 1 << 20

// RAMView is a read-only view of one region of guest RAM, for providers
// that look at page contents. It reads with pread(2) and finds populated
// pages with lseek(2) SEEK_DATA/SEEK_HOLE on the region's file: it never
// maps guest RAM, so it never allocates host memory for it.
//
// Why not a mapping: guest RAM is a memfd (shmem), and reading a page
// that was never written (a hole) through a MAP_SHARED mapping of it
// allocates a page-cache page for it, zero-filled, charged to the VMM's
// memory: a provider scanning 64 GiB of mostly empty guest RAM that way
// makes it all resident on the source host. pread of a hole returns
// zeros and allocates nothing (TestScanLeavesHolesAlone measures both).
//
// Data and Scan move the file offset, which the descriptor shares with
// the VMM's (it is the same open file): nothing in Ferry reads or writes
// guest RAM at the file offset, and a provider must not either (ReadAt
// is pread). A view is a value; its methods may run concurrently. The guest keeps
// running while a provider reads, so contents may change under it: that
// is safe, because a page written after the hint request travels anyway
// (docs/ARCHITECTURE.md, invariant 1).
type RAMView struct {
	Region        // where it is: GPA, Size, HostAddr, File, Offset
	Index  int    // the region's index in VM.RAM
	First  uint64 // page index of the region's first page
	file   *os.File
}

// Regions returns a view of each RAM region, in VM.RAM (page-index)
// order. A region whose File is not in vm.Files gets a view whose reads
// fail.
func (vm VM) Regions() []RAMView {
	out := make([]RAMView, len(vm.RAM))
	var first uint64
	for i, r := range vm.RAM {
		out[i] = RAMView{Region: r, Index: i, First: first}
		if r.File >= 0 && r.File < len(vm.Files) {
			out[i].file = vm.Files[r.File]
		}
		first += r.Size / PageSize
	}
	return out
}

// GPA returns the guest physical address of the first byte of page
// index p, and false when p is not in RAM (p >= Pages). It is the
// inverse of Page.
func (vm VM) GPA(p uint64) (uint64, bool) {
	for _, r := range vm.RAM {
		n := r.Size / PageSize
		if p < n {
			return r.GPA + p*PageSize, true
		}
		p -= n
	}
	return 0, false
}

// Pages is the number of pages in the region.
func (v RAMView) Pages() uint64 { return v.Size / PageSize }

// End is the page index just past the region's last page.
func (v RAMView) End() uint64 { return v.First + v.Pages() }

// Page returns the page index of the page holding gpa, and false when
// gpa is not in this region.
func (v RAMView) Page(gpa uint64) (uint64, bool) {
	if gpa < v.GPA || gpa-v.GPA >= v.Size {
		return 0, false
	}
	return v.First + (gpa-v.GPA)/PageSize, true
}

// PageGPA returns the guest physical address of page index p, and false
// when p is not in this region.
func (v RAMView) PageGPA(p uint64) (uint64, bool) {
	if p < v.First || p >= v.End() {
		return 0, false
	}
	return v.GPA + (p-v.First)*PageSize, true
}

// ReadAt implements io.ReaderAt over the region: off 0 is the byte at
// GPA. It reads with pread, so holes read as zeros without being
// allocated. Reading past the region's end returns io.EOF.
func (v RAMView) ReadAt(b []byte, off int64) (int, error) {
	if v.file == nil {
		return 0, fmt.Errorf("RAM region %d: file %d was not handed to the provider", v.Index, v.File)
	}
	if off < 0 || uint64(off) >= v.Size {
		return 0, io.EOF
	}
	var short error
	if left := v.Size - uint64(off); uint64(len(b)) > left {
		b, short = b[:left], io.EOF
	}
	n, err := v.file.ReadAt(b, int64(v.Offset)+off)
	if err != nil {
		return n, err
	}
	return n, short
}

// Data calls fn for every run of populated pages of the region, in
// increasing order, as page indices (first, count), without reading
// them. The pages between runs are holes: never written, or punched out
// again (freed guest pages reported through free page reporting); they
// read as zero, and the engine already sends them as zero runs without
// a hint. fn's error, or ctx's, ends the walk and is returned.
//
// A file that cannot tell holes (lseek answers EINVAL) is one run.
func (v RAMView) Data(ctx context.Context, fn func(first, count uint64) error) error {
	if v.file == nil {
		return fmt.Errorf("RAM region %d: file %d was not handed to the provider", v.Index, v.File)
	}
	start, end := int64(v.Offset), int64(v.Offset+v.Size)
	for off := start; off < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, h, err := v.extent(off, end)
		if err != nil || d >= end {
			return err
		}
		if err := fn(v.First+uint64(d-start)/PageSize, uint64(h-d)/PageSize); err != nil {
			return err
		}
		off = h
	}
	return nil
}

// extent returns the next populated range [d, h) at or after off, page
// aligned and clipped to end; d >= end when there is none.
func (v RAMView) extent(off, end int64) (d, h int64, err error) {
	d, err = v.file.Seek(off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO): // no data from off on
		return end, end, nil
	case errors.Is(err, unix.EINVAL): // holes not supported: all data
		return off, end, nil
	case err != nil:
		return 0, 0, fmt.Errorf("RAM region %d: SEEK_DATA at %#x: %w", v.Index, off, err)
	}
	d = d / PageSize * PageSize
	if d >= end {
		return end, end, nil
	}
	h, err = v.file.Seek(d, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("RAM region %d: SEEK_HOLE at %#x: %w", v.Index, d, err)
	}
	h = min((h+PageSize-1)/PageSize*PageSize, end)
	return max(d, off), h, nil
}

// Scan calls fn with the contents of every populated page of the
// region, in increasing order: first is the page index of data's first
// page, and data holds whole pages, at most ScanChunk bytes. data is
// Scan's buffer, valid only during the call; fn must not keep it. Holes
// are skipped without being read (see Data): Scan never allocates guest
// RAM on the host. fn's error, or ctx's, ends the scan and is returned.
func (v RAMView) Scan(ctx context.Context, fn func(first uint64, data []byte) error) error {
	buf := make([]byte, ScanChunk)
	return v.Data(ctx, func(first, count uint64) error {
		for count > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(count, ScanChunk/PageSize)
			b := buf[:n*PageSize]
			if _, err := v.ReadAt(b, int64((first-v.First)*PageSize)); err != nil {
				return fmt.Errorf("RAM region %d: read page %d: %w", v.Index, first, err)
			}
			if err := fn(first, b); err != nil {
				return err
			}
			first, count = first+n, count-n
		}
		return nil
	})
}
