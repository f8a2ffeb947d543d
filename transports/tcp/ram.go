package tcp

import (
	"fmt"
	"os"
	"sort"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
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

// span returns the bytes of pages [first, first+count) if they lie
// inside one region; a frame must never reach outside guest RAM.
func (m *ram) span(first, count uint64) (*region, []byte, error) {
	if count == 0 || first >= m.Pages || count > m.Pages-first {
		return nil, nil, fmt.Errorf("%w: pages %d+%d are outside guest RAM (%d pages)", transport.ErrProtocol, first, count, m.Pages)
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
		if err := guestram.Control(r.file, func(fd int) error { return punchHole(fd, off, int64(len(b))) }); err == nil {
			return
		}
		r.noPunch.Store(true)
	}
	clear(b)
}
