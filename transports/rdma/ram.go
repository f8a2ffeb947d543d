package rdma

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

const pageSize = framework.PageSize

// region is one mapped RAM region and, once registered, its registration
// (local) or the peer's (remote base and key).
type region struct {
	first, pages uint64
	mem          []byte
	file         *os.File
	off          int64
	mr           *fabric.MR
	rbase, rkey  uint64 // the peer's registration of this region (source)
}

// ram is a session's guest RAM.
type ram struct {
	regions []*region
	layout  []wire.Region
	pages   uint64
}

// mapRAM checks the layout and maps every region (read-write to receive).
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
		if r.File < 0 || r.File >= len(req.Files) || req.Files[r.File] == nil {
			m.unmap()
			return nil, fmt.Errorf("RAM region %d names file %d of %d", i, r.File, len(req.Files))
		}
		f := req.Files[r.File]
		st, err := f.Stat()
		if err != nil || r.Offset+r.Size < r.Offset || r.Offset+r.Size > uint64(st.Size()) {
			m.unmap()
			return nil, fmt.Errorf("RAM region %d (%#x bytes at %#x) runs past the end of %s", i, r.Size, r.Offset, f.Name())
		}
		mem, err := unix.Mmap(int(f.Fd()), int64(r.Offset), int(r.Size), prot, unix.MAP_SHARED)
		if err != nil {
			m.unmap()
			return nil, fmt.Errorf("map RAM region %d: %w", i, err)
		}
		m.regions = append(m.regions, &region{first: m.pages, pages: r.Size / pageSize, mem: mem, file: f, off: int64(r.Offset)})
		m.pages += r.Size / pageSize
		m.layout = append(m.layout, wire.Region{GPA: r.GPA, Size: r.Size})
	}
	return m, nil
}

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

// spans calls fn for each piece of run [first, first+count) that lies in
// one region, with the page offset into that region; the run was checked.
func (m *ram) spans(first, count uint64, fn func(r *region, off, n uint64) error) error {
	for count > 0 {
		i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].first+m.regions[i].pages > first })
		r := m.regions[i]
		off := first - r.first
		n := min(count, r.pages-off)
		if err := fn(r, off, n); err != nil {
			return err
		}
		first, count = first+n, count-n
	}
	return nil
}

// zero makes pages [off, off+n) of r read as zeros. punch deallocates
// them (sparse); a provider that pins registered memory (verbs) must not
// have pages swapped under its registration, so there they are cleared.
func (r *region) zero(off, n uint64, punch bool) {
	b := r.mem[off*pageSize : (off+n)*pageSize]
	if punch && unix.Fallocate(int(r.file.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
		r.off+int64(off*pageSize), int64(len(b))) == nil {
		return
	}
	clear(b)
}
