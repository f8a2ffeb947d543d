package cmma

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/hint"
)

// A CMMA value is one byte per guest frame, as KVM_S390_GET_CMMA_BITS
// returns it: bits 24..31 of the frame's PGSTE masked with 0x43,
//
//	res[i] = (pgstev >> 24) & 0x43   arch/s390/kvm/kvm-s390.c, kvm_s390_peek_cmma
//	                                 and kvm_s390_get_cmma (Linux 4.13 to 6.x)
//	values[i] = usage | nodat << 6   arch/s390/kvm/dat.c, __dat_peek_cmma_pte
//	                                 (the new gmap code: the same encoding)
//
// from the PGSTE's guest page state (arch/s390/include/asm/pgtable.h):
//
//	_PGSTE_GPS_USAGE_MASK         0x03000000 → value bits 1..0, the usage state:
//	_PGSTE_GPS_USAGE_STABLE       0x00000000 → 0 stable
//	_PGSTE_GPS_USAGE_UNUSED       0x01000000 → 1 unused
//	_PGSTE_GPS_USAGE_POT_VOLATILE 0x02000000 → 2 potentially volatile
//	_PGSTE_GPS_USAGE_VOLATILE     0x03000000 → 3 volatile
//	_PGSTE_GPS_NODAT              0x40000000 → value bit 6, no-DAT
//
// The guest sets a frame's state with the ESSA instruction; Linux marks
// a page unused when it frees it and stable when it allocates it
// (arch/s390/mm/page-states.c). Bits 2..5 and 7 are always zero.
const (
	UsageMask        = 0x03
	UsageStable      = 0x00
	UsageUnused      = 0x01
	UsagePotVolatile = 0x02
	UsageVolatile    = 0x03
	NoDAT            = 0x40
	knownBits        = UsageMask | NoDAT
)

// Unused reports whether a CMMA value marks its frame unused: the guest
// promised not to rely on its contents, so the frame need not travel.
// Only the unused state counts. A volatile frame's contents may be
// discarded only if the guest then gets a discard fault on access, not
// zeros; a potentially volatile one still holds data if it was changed.
// A value with a bit the kernel never sets is not trusted: no hint.
func Unused(v byte) bool { return v&^knownBits == 0 && v&UsageMask == UsageUnused }

// Layout maps guest frame numbers (GPA / 4096) to framework page indices
// (the RAM regions laid end to end, 4 KiB pages). s390 frames are 4 KiB,
// like framework pages.
type Layout []span

type span struct {
	gfn, frames, page uint64 // first frame, frame count, first page index
}

// NewLayout returns the layout of ram, which must be page-aligned with
// increasing, non-overlapping guest addresses (framework.Layout.Check).
func NewLayout(ram []hint.Region) (Layout, error) {
	var l Layout
	var page, end uint64
	for i, r := range ram {
		if r.Size == 0 || r.Size%pageSize != 0 || r.GPA%pageSize != 0 || r.GPA+r.Size < r.GPA {
			return nil, fmt.Errorf("RAM region %d (%#x+%#x) is not page-aligned", i, r.GPA, r.Size)
		}
		if i > 0 && r.GPA < end {
			return nil, fmt.Errorf("RAM region %d at %#x overlaps or precedes region %d", i, r.GPA, i-1)
		}
		l = append(l, span{gfn: r.GPA / pageSize, frames: r.Size / pageSize, page: page})
		page += r.Size / pageSize
		end = r.GPA + r.Size
	}
	return l, nil
}

const pageSize = 4096

// Decode appends to dst, coalesced and in increasing order, the page
// ranges of the frames whose value says unused: values[i] is the value of
// frame first+i. Frames outside RAM are ignored; dst's last range is
// extended when the first new one continues it.
func (l Layout) Decode(dst []hint.Range, first uint64, values []byte) []hint.Range {
	n := uint64(len(values))
	if first > ^uint64(0)-n {
		n = ^uint64(0) - first // frames past 2^64 do not exist
	}
	for _, s := range l {
		lo, hi := max(first, s.gfn), min(first+n, s.gfn+s.frames)
		for g := lo; g < hi; g++ {
			if !Unused(values[g-first]) {
				continue
			}
			p := s.page + (g - s.gfn)
			if k := len(dst); k > 0 && dst[k-1].First+dst[k-1].Count == p {
				dst[k-1].Count++
				continue
			}
			dst = append(dst, hint.Range{First: p, Count: 1})
		}
	}
	return dst
}
