package tcp

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/guestram"
)

const pageSize = framework.PageSize

// region is one mapped RAM region.
type region struct {
	first   uint64 // page index of mem[0]
	pages   uint64
	mem     []byte // the mapping, pages*pageSize bytes
	file    *os.File
	off     int64 // file offset of mem[0]
	noPunch atomic.Bool
	noWrite atomic.Bool // pwrite failed once: copy through the mapping
	noRead  atomic.Bool // pread failed once: copy from the mapping
}

// ram is the guest RAM of a session, mapped from the request's files.
type ram struct {
	guestram.RAM // Layout, Pages, Unmap
	regions      []*region
}

// mapRAM maps the request's guest RAM (guestram.Map): read-only to
// send, read-write to receive.
func mapRAM(req transport.OpenRequest, writable bool) (*ram, error) {
	g, err := guestram.Map(req, writable)
	if err != nil {
		return nil, err
	}
	return &ram{RAM: g, regions: guestram.Wrap(g.Maps, newRegion)}, nil
}

func newRegion(g guestram.Mapping) *region {
	return &region{first: g.First, pages: g.Pages, mem: g.Mem, file: g.File, off: g.Off}
}

// find returns the region holding page p; p < m.Pages.
func (m *ram) find(p uint64) *region {
	i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].first+m.regions[i].pages > p })
	return m.regions[i]
}

// span returns the region holding pages [first, first+count) if they
// lie inside one; a frame must never reach outside guest RAM.
func (m *ram) span(first, count uint64) (*region, error) {
	if count == 0 || first >= m.Pages || count > m.Pages-first {
		return nil, fmt.Errorf("%w: pages %d+%d are outside guest RAM (%d pages)", transport.ErrProtocol, first, count, m.Pages)
	}
	r := m.find(first)
	if off := first - r.first; count > r.pages-off {
		return nil, fmt.Errorf("%w: pages %d+%d cross the end of a RAM region at page %d", transport.ErrProtocol, first, count, r.first+r.pages)
	}
	return r, nil
}

// zero makes the pages of run that lie in [first, end) (inside r) read
// as zeros: holes punched in the file keep the destination sparse (the
// file is asked where its data is, so a range that holds none costs one
// question, however many cells of a strided run it spans: punchZeros);
// files that cannot punch are cleared.
func (r *region) zero(run wire.Run, first, end uint64) {
	if !r.noPunch.Load() {
		if err := guestram.Control(r.file, func(fd int) error { return r.punchZeros(fd, run, first, end) }); err == nil {
			return
		}
		r.noPunch.Store(true)
	}
	run.Stretches(first, end, func(lo, hi uint64) { clear(r.mem[(lo-r.first)*pageSize : (hi-r.first)*pageSize]) })
}

// punchZeros punches the pages of run in [first, end) that hold data,
// led by SEEK_DATA: it asks where the next data at or after the next
// covered page is, punches from there to the end of that covered stretch
// if it lies inside it, else moves on to the first covered page after
// it. The kernel answers for the moment of the call, as a punch would
// act at it; pages of cells the run does not cover are never punched.
func (r *region) punchZeros(fd int, run wire.Run, first, end uint64) error {
	for p := first; p < end; {
		lo, hi := run.Next(p)
		if lo >= end {
			return nil
		}
		hi = min(hi, end)
		off := r.off + int64(lo-r.first)*pageSize
		d, err := seekData(fd, off)
		if err != nil {
			d = off // the file cannot say: punch the stretch
		}
		if d < 0 {
			return nil // no data after lo at all
		}
		dp := r.first + uint64(d-r.off)/pageSize
		if dp >= end {
			return nil
		}
		if dp >= hi {
			p = dp // the data lies beyond this stretch: go to the next covered page from it
			continue
		}
		if err := punchHole(fd, r.off+int64(dp-r.first)*pageSize, int64(hi-dp)*pageSize); err != nil {
			return err
		}
		p = hi
	}
	return nil
}

// write puts b (whole pages) into the region at page first: with pwrite
// into the file, which fills the page cache through the kernel's own
// mapping; files that cannot be written that way are written through
// mem. Both land in the same pages. pwrite is the fast way here: the
// first store to each page of a fresh mapping is a page fault, and on
// this kind of host (nested virtualisation, 4 KiB shmem pages) those
// faults cost 3.4 CPU-seconds per GB against pwrite's 0.2
// (docs/BENCHMARKS.md, "End-to-end throughput").
func (r *region) write(b []byte, first uint64) {
	off := r.off + int64(first-r.first)*pageSize
	if !r.noWrite.Load() {
		err := guestram.Control(r.file, func(fd int) error { return pwriteAll(fd, b, off) })
		if err == nil {
			return
		}
		r.noWrite.Store(true)
	}
	i := (first - r.first) * pageSize
	copy(r.mem[i:i+uint64(len(b))], b)
}

// pwriteAll writes all of b at off, or fails.
func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// read copies the pages from page first into b (whole pages) with
// pread, which the kernel serves from the page cache without mapping
// anything; files that cannot be read that way are copied from mem.
// pread costs 0.1 CPU-seconds per GB here, a first read through a fresh
// mapping 0.56 (its page faults; docs/BENCHMARKS.md, "End-to-end
// throughput").
func (r *region) read(b []byte, first uint64) {
	off := r.off + int64(first-r.first)*pageSize
	if !r.noRead.Load() {
		err := guestram.Control(r.file, func(fd int) error { return preadAll(fd, b, off) })
		if err == nil {
			return
		}
		r.noRead.Store(true)
	}
	i := (first - r.first) * pageSize
	copy(b, r.mem[i:i+uint64(len(b))])
}

// preadAll fills b from off, or fails; the RAM file is never shorter
// than the mapping (guestram.Map checks).
func preadAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
