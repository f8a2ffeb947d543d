package pagemap

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryvm/ferry/framework/hint"
)

// entry is a /proc/PID/pagemap entry: one host-endian u64 per
// virtual page (Documentation/admin-guide/mm/pagemap.rst).
//
//	63 present  62 swapped  61 file page or shared anon  58 guard region (6.15+)
//	57 uffd-wp  56 exclusively mapped  55 soft-dirty  54..0 PFN (swap type/offset)
type entry uint64

// Entry bits.
const (
	entryPresent   entry = 1 << 63
	entrySwapped   entry = 1 << 62
	entryFile      entry = 1 << 61
	entryGuard     entry = 1 << 58
	entryUffdWP    entry = 1 << 57
	entryExclusive entry = 1 << 56
	entrySoftDirty entry = 1 << 55
	entryReserved  entry = 3 << 59 // zero in every kernel so far
	entryPFNMask   entry = 1<<55 - 1
)

// entrySize is the size of one entry in the file.
const entrySize = 8

// populated reports whether the VMM's page table has anything at this
// page: a mapped page, a swap or migration entry, a guard or uffd-wp
// marker, a page flag, or a bit this code does not know (59, 60). Only an
// entry with none of these is "empty". Soft-dirty alone does not count:
// the kernel sets it on empty entries of VM_SOFTDIRTY areas. An empty entry does NOT mean the page is zero; the
// caller only uses a non-empty one to veto a file hole.
func (e entry) populated() bool {
	return e&(entryPresent|entrySwapped|entryFile|entryGuard|entryUffdWP|entryExclusive|entryReserved) != 0
}

func (e entry) String() string {
	return fmt.Sprintf("pagemap entry %#016x (present=%t swapped=%t file=%t guard=%t uffd-wp=%t exclusive=%t soft-dirty=%t)",
		uint64(e), e&entryPresent != 0, e&entrySwapped != 0, e&entryFile != 0, e&entryGuard != 0,
		e&entryUffdWP != 0, e&entryExclusive != 0, e&entrySoftDirty != 0)
}

// decodeEntries reads raw pagemap bytes describing the pages from page
// first on and appends the runs of populated pages to dst, coalesced. The
// buffer must hold whole entries.
func decodeEntries(dst []hint.Range, first uint64, buf []byte) ([]hint.Range, error) {
	if len(buf)%entrySize != 0 {
		return dst, fmt.Errorf("pagemap: %d bytes is not a whole number of %d-byte entries", len(buf), entrySize)
	}
	for i := 0; i < len(buf); i += entrySize {
		if !entry(binary.NativeEndian.Uint64(buf[i:])).populated() {
			continue
		}
		p := first + uint64(i/entrySize)
		if n := len(dst); n > 0 && dst[n-1].First+dst[n-1].Count == p {
			dst[n-1].Count++
			continue
		}
		dst = append(dst, hint.Range{First: p, Count: 1})
	}
	return dst, nil
}
