package tcp

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
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
}

// ram is the guest RAM of a session, mapped from the request's files.
type ram struct {
	regions []*region
	layout  []wire.Region
	pages   uint64
}

// mapRAM checks the layout and maps every region: read-only to send,
// read-write to receive.
func mapRAM(req transport.OpenRequest, writable bool) (*ram, error) {
	if len(req.RAM) == 0 || len(req.RAM) > wire.MaxRegions {
		return nil, fmt.Errorf("%d RAM regions (want 1..%d)", len(req.RAM), wire.MaxRegions)
	}
	l := make(framework.Layout, len(req.RAM))
	for i, r := range req.RAM {
		l[i] = framework.Region{GPA: r.GPA, Size: r.Size, Offset: r.Offset}
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	m := &ram{}
	for i, r := range req.RAM {
		reg, err := mapRegion(req.Files, i, r, prot)
		if err != nil {
			m.unmap()
			return nil, err
		}
		reg.first = m.pages
		m.pages += reg.pages
		m.regions = append(m.regions, reg)
		m.layout = append(m.layout, wire.Region{GPA: r.GPA, Size: r.Size})
	}
	return m, nil
}

func mapRegion(files []*os.File, i int, r transport.RAMRegion, prot int) (*region, error) {
	if r.File < 0 || r.File >= len(files) || files[r.File] == nil {
		return nil, fmt.Errorf("RAM region %d names file %d of %d", i, r.File, len(files))
	}
	f := files[r.File]
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("RAM region %d: %w", i, err)
	}
	// Touching a mapping past the end of its file raises SIGBUS: refuse it here.
	if end := r.Offset + r.Size; end < r.Offset || end > uint64(st.Size()) || r.Size > 1<<46 {
		return nil, fmt.Errorf("RAM region %d (%#x bytes at offset %#x) runs past the end of %s (%d bytes)",
			i, r.Size, r.Offset, f.Name(), st.Size())
	}
	reg := &region{pages: r.Size / pageSize, file: f, off: int64(r.Offset)}
	err = control(f, func(fd int) (err error) {
		reg.mem, err = unix.Mmap(fd, int64(r.Offset), int(r.Size), prot, unix.MAP_SHARED)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("map RAM region %d of %s: %w", i, f.Name(), err)
	}
	return reg, nil
}

// control runs fn with f's descriptor, without Fd's switch to blocking mode.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// unmap releases every mapping. No goroutine may use them afterwards.
func (m *ram) unmap() error {
	var errs []error
	for _, r := range m.regions {
		if r.mem != nil {
			errs = append(errs, unix.Munmap(r.mem))
			r.mem = nil
		}
	}
	return errors.Join(errs...)
}

// find returns the region holding page p; p < m.pages.
func (m *ram) find(p uint64) *region {
	i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].first+m.regions[i].pages > p })
	return m.regions[i]
}

// span returns the bytes of pages [first, first+count) if they lie
// inside one region; a frame must never reach outside guest RAM.
func (m *ram) span(first, count uint64) (*region, []byte, error) {
	if count == 0 || first >= m.pages || count > m.pages-first {
		return nil, nil, fmt.Errorf("%w: pages %d+%d are outside guest RAM (%d pages)", transport.ErrProtocol, first, count, m.pages)
	}
	r := m.find(first)
	off := first - r.first
	if count > r.pages-off {
		return nil, nil, fmt.Errorf("%w: pages %d+%d cross the end of a RAM region at page %d", transport.ErrProtocol, first, count, r.first+r.pages)
	}
	return r, r.mem[off*pageSize : (off+count)*pageSize], nil
}

// zero makes b (a span of r) read as zeros: a hole punched in the file
// keeps the destination sparse; files that cannot punch are cleared.
func (r *region) zero(b []byte, first uint64) {
	if !r.noPunch.Load() {
		off := r.off + int64(first-r.first)*pageSize
		if err := control(r.file, func(fd int) error { return punchHole(fd, off, int64(len(b))) }); err == nil {
			return
		}
		r.noPunch.Store(true)
	}
	clear(b)
}
