package postcopy

import "fmt"

// PageSize is the unit of guest RAM (framework.PageSize).
const PageSize = 4096

// Region is one region of guest RAM as the destination maps it: Host is
// the guest mapping the VMM and KVM use (registered with userfaultfd),
// backed by Fd (a memfd) at Offset. Page indices run over the regions
// laid end to end, as framework.Layout's do.
type Region struct {
	Host   uintptr // address of the guest mapping, page-aligned
	Size   uint64  // bytes, a multiple of PageSize
	Fd     int     // the memfd, for Discard
	Offset int64   // Host's first byte is at this file offset
}

// Mapping is guest RAM in page-index order.
type Mapping []Region

// Pages is the number of pages in the mapping.
func (m Mapping) Pages() uint64 {
	var n uint64
	for _, r := range m {
		n += r.Size / PageSize
	}
	return n
}

// Page returns the page index holding host address addr.
func (m Mapping) Page(addr uint64) (uint64, bool) {
	var base uint64
	for _, r := range m {
		if addr >= uint64(r.Host) && addr-uint64(r.Host) < r.Size {
			return base + (addr-uint64(r.Host))/PageSize, true
		}
		base += r.Size / PageSize
	}
	return 0, false
}

// each calls fn for the pieces of pages [first, first+count), one per
// region they cross, with the piece's region and byte offset in it.
func (m Mapping) each(first, count uint64, fn func(r Region, off, length uint64) error) error {
	for _, r := range m {
		n := r.Size / PageSize
		if count == 0 {
			return nil
		}
		if first >= n {
			first -= n
			continue
		}
		k := min(count, n-first)
		if err := fn(r, first*PageSize, k*PageSize); err != nil {
			return err
		}
		first, count = 0, count-k
	}
	if count != 0 {
		return fmt.Errorf("%w: %d pages past the end of the mapping", ErrRange, count)
	}
	return nil
}
