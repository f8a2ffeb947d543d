package rdma

import (
	"os"
	"sort"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/guestram"
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
	// The peer's registration as the urgent endpoint addresses it: the
	// same registration (one domain), given again in the KEYS.
	urbase, urkey uint64
	// warm has a bit per warmChunk pages of the region: set once this
	// session populated the whole chunk (populate), cleared when it
	// punches a page of it out (zero). A hint only: a page unmapped
	// behind its back (the VMM punching a hole) costs the provider's
	// copy a page fault, never a wrong byte.
	warm []atomic.Uint64
}

// warmChunk is the granule (pages) of region.warm: 2 MiB.
const warmChunk = 512

// ram is a session's guest RAM.
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
	return &region{first: g.First, pages: g.Pages, mem: g.Mem, file: g.File, off: g.Off,
		warm: make([]atomic.Uint64, (g.Pages+warmChunk*64-1)/(warmChunk*64))}
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

// populateMin is the smallest data run (pages) whose mapping is
// populated before the provider copies it (populate).
const populateMin = 16

// pins says whether the provider pins registered memory (verbs, or any
// provider that wants local registrations): its pages are all present
// from registration on, so there is nothing to populate, and nothing may
// be punched out from under the registration.
func pins(c fabric.Caps) bool { return c.Provider == "verbs" || c.Local }

// populate makes pages [off, off+n) of r present in this process's
// mapping with one madvise (MADV_POPULATE_WRITE to be written,
// MADV_POPULATE_READ to be read), where a software provider's socket copy
// would otherwise take a page fault per page (per 16 pages when reading)
// as it first touches them. It changes no byte: a page already present is
// left alone, an absent one becomes a page of zeros, as the fault would
// have made it. Measured here (nested virtualisation): a kernel copy
// into a fresh 1 GiB mapping costs 3.2 CPU-s with its faults, 1.7 after
// populating (0.3 of it the madvise); a copy out of it 0.65 and 0.5. On
// kernels before 5.14 (EINVAL) it does nothing.
//
// Chunks this session already populated whole are skipped: on a second
// pass the madvise would only walk present pages (region.warm).
func (r *region) populate(off, n uint64, write bool) {
	advice := unix.MADV_POPULATE_READ
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	end := off + n
	for p := off; p < end; {
		// Skip chunks already warm, then populate up to the next warm one.
		for p < end && r.isWarm(p/warmChunk) && p%warmChunk == 0 && p+warmChunk <= end {
			p += warmChunk
		}
		if p >= end {
			break
		}
		q := min((p/warmChunk+1)*warmChunk, end)
		for q < end && !(r.isWarm(q/warmChunk) && q+warmChunk <= end) {
			q = min(q+warmChunk, end)
		}
		if unix.Madvise(r.mem[p*pageSize:q*pageSize], advice) == nil {
			for c := (p + warmChunk - 1) / warmChunk; (c+1)*warmChunk <= q; c++ {
				r.warm[c/64].Or(1 << (c % 64))
			}
		}
		p = q
	}
}

func (r *region) isWarm(c uint64) bool { return r.warm[c/64].Load()&(1<<(c%64)) != 0 }

// zero makes pages [off, off+n) of r read as zeros. punch deallocates
// them (sparse); a provider that pins registered memory (verbs) must not
// have pages swapped under its registration, so there they are cleared.
func (r *region) zero(off, n uint64, punch bool) {
	b := r.mem[off*pageSize : (off+n)*pageSize]
	if punch {
		for c := off / warmChunk; c*warmChunk < off+n; c++ { // before the punch
			r.warm[c/64].And(^uint64(1 << (c % 64)))
		}
	}
	if punch && unix.Fallocate(int(r.file.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
		r.off+int64(off*pageSize), int64(len(b))) == nil {
		return
	}
	clear(b)
}
