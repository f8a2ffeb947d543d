package pvh

import "fmt"

// Fixed guest-physical addresses of the boot information written by
// [WriteStartInfo]. See the package documentation for the full layout.
const (
	StartInfoGPA = 0x6000 // struct hvm_start_info (56 bytes)
	MemmapGPA    = 0x6040 // hvm_memmap_table_entry[MaxMemmapEntries]
	CmdlineGPA   = 0x7000 // NUL-terminated kernel command line
	MaxCmdline   = 4095   // bytes, not counting the terminating NUL

	// MaxMemmapEntries is the capacity of the memory map at MemmapGPA;
	// 128 entries of 24 bytes end at 0x6c40, below CmdlineGPA.
	MaxMemmapEntries = 128

	// BootInfoStart and BootInfoEnd bound the area [0x6000, 0x8000) that
	// belongs to the loader; kernel segments may not overlap it.
	BootInfoStart = StartInfoGPA
	BootInfoEnd   = CmdlineGPA + MaxCmdline + 1

	// MMIOHoleStart and MMIOHoleEnd bound the 32-bit MMIO hole
	// [3 GiB, 4 GiB), where there is never guest RAM.
	MMIOHoleStart = 0xC000_0000
	MMIOHoleEnd   = 0x1_0000_0000

	// LowRAMEnd and HighMemStart bound the legacy VGA/ROM/BIOS area that the
	// memory map reports as reserved.
	LowRAMEnd    = 0xA_0000
	HighMemStart = 0x10_0000
)

// Memory is the guest RAM as the loader sees it: Slice returns the host
// bytes backing [gpa, gpa+n), or an error if any byte of it is not guest RAM.
// The returned slice has length n and aliases guest memory; the loader only
// writes to it and does not keep it after the call returns.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Region is a range of guest-physical RAM [GPA, GPA+Size).
type Region struct {
	GPA, Size uint64
}

// End returns the first guest-physical address after the region.
func (r Region) End() uint64 { return r.GPA + r.Size }

// contains reports whether [gpa, end) lies entirely inside r.
func (r Region) contains(gpa, end uint64) bool {
	return gpa >= r.GPA && end <= r.End()
}

// checkRAM verifies that ram is non-empty, sorted, non-overlapping, free of
// empty or wrapping regions, starts at 0 and stays out of the MMIO hole.
func checkRAM(ram []Region) error {
	if len(ram) == 0 {
		return fmt.Errorf("no guest RAM regions")
	}
	if ram[0].GPA != 0 {
		return fmt.Errorf("first RAM region starts at %#x; it must start at 0", ram[0].GPA)
	}
	for i, r := range ram {
		if r.Size == 0 || r.End() < r.GPA {
			return fmt.Errorf("RAM region %d (%#x, size %#x) is empty or wraps around", i, r.GPA, r.Size)
		}
		if i > 0 && r.GPA < ram[i-1].End() {
			return fmt.Errorf("RAM region %d at %#x is not sorted after region %d ending at %#x", i, r.GPA, i-1, ram[i-1].End())
		}
		if r.GPA < MMIOHoleEnd && r.End() > MMIOHoleStart {
			return fmt.Errorf("RAM region %d (%#x-%#x) overlaps the 32-bit MMIO hole", i, r.GPA, r.End()-1)
		}
	}
	return nil
}

// totalMiB returns the amount of RAM in ram, in MiB (rounded down).
func totalMiB(ram []Region) uint64 {
	var n uint64
	for _, r := range ram {
		n += r.Size
	}
	return n >> 20
}
