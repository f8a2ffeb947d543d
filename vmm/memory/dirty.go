package memory

import "sync/atomic"

// VMM-side dirty tracking. KVM's dirty log sees only writes made by vCPUs;
// writes the VMM itself makes into guest RAM (virtio used rings, device-
// writable buffers) are recorded here and merged with KVM's log by the
// migration code. One bit per 4 KiB page, indexed by memfd offset / 4 KiB,
// set and taken with atomic word operations so devices on any thread can
// mark while a migration thread harvests.

// MarkDirty records that the VMM wrote guest physical [gpa, gpa+n). Parts
// outside guest RAM are ignored (nothing was written there).
func (g *Guest) MarkDirty(gpa, n uint64) {
	if n == 0 {
		return
	}
	for _, r := range g.regions {
		lo, hi := max(gpa, r.GPA), min(gpa+n, r.End())
		if gpa+n < gpa { // wrapped: clamp to the region
			hi = r.End()
		}
		if lo >= hi {
			continue
		}
		first := (r.Offset + lo - r.GPA) / PageSize
		last := (r.Offset + hi - 1 - r.GPA) / PageSize
		for p := first; p <= last; p++ {
			w := &g.dirty[p/64]
			if bit := uint64(1) << (p % 64); atomic.LoadUint64(w)&bit == 0 {
				atomic.OrUint64(w, bit)
			}
		}
	}
}

// TakeDirty ORs the VMM's dirty bits into dst (one bit per page of the
// memfd, len(dst) >= DirtyWords()) and clears them.
func (g *Guest) TakeDirty(dst []uint64) {
	for i := range g.dirty {
		if atomic.LoadUint64(&g.dirty[i]) != 0 {
			dst[i] |= atomic.SwapUint64(&g.dirty[i], 0)
		}
	}
}

// DirtyWords is the length of a page bitmap covering all of guest RAM.
func (g *Guest) DirtyWords() int { return len(g.dirty) }

// IsDirty reports whether the VMM marked the page holding gpa and nobody
// took the mark yet.
func (g *Guest) IsDirty(gpa uint64) bool {
	for _, r := range g.regions {
		if r.Contains(gpa, 1) {
			p := (r.Offset + gpa - r.GPA) / PageSize
			return atomic.LoadUint64(&g.dirty[p/64])&(1<<(p%64)) != 0
		}
	}
	return false
}
