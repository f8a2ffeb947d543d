package pvh

import (
	"fmt"
	"strings"
)

// hvm_start_info and memory-map constants from Xen's
// include/public/arch-x86/hvm/start_info.h.
const (
	StartInfoMagic   = 0x336ec578 // hvm_start_info.magic
	StartInfoVersion = 1          // version 1 has the memory map fields
	startInfoSize    = 56
	memmapEntrySize  = 24

	// E820 memory types used in the memory map.
	E820RAM      = 1
	E820Reserved = 2
)

// MemmapEntry is one hvm_memmap_table_entry.
type MemmapEntry struct {
	Addr, Size uint64
	Type       uint32
}

// Memmap returns the memory map that [WriteStartInfo] writes for ram: RAM
// for [0, 0xA0000), reserved for [0xA0000, 0x100000), RAM from 1 MiB to the
// end of the first region, and RAM for each further region. ram must be
// sorted, start at 0 and its first region must reach at least 1 MiB.
func Memmap(ram []Region) ([]MemmapEntry, error) {
	if err := checkRAM(ram); err != nil {
		return nil, err
	}
	if ram[0].End() < HighMemStart {
		return nil, fmt.Errorf("first RAM region ends at %#x; it must cover the low 1 MiB", ram[0].End())
	}
	mm := []MemmapEntry{
		{Addr: 0, Size: LowRAMEnd, Type: E820RAM},
		{Addr: LowRAMEnd, Size: HighMemStart - LowRAMEnd, Type: E820Reserved},
	}
	if ram[0].End() > HighMemStart {
		mm = append(mm, MemmapEntry{Addr: HighMemStart, Size: ram[0].End() - HighMemStart, Type: E820RAM})
	}
	for _, r := range ram[1:] {
		mm = append(mm, MemmapEntry{Addr: r.GPA, Size: r.Size, Type: E820RAM})
	}
	if len(mm) > MaxMemmapEntries {
		return nil, fmt.Errorf("memory map needs %d entries; at most %d fit at %#x", len(mm), MaxMemmapEntries, MemmapGPA)
	}
	return mm, nil
}

// WriteStartInfo writes hvm_start_info at [StartInfoGPA], the memory map
// for ram at [MemmapGPA] (see [Memmap]) and the NUL-terminated cmdline at
// [CmdlineGPA]. cmdline may be at most [MaxCmdline] bytes and may not
// contain NUL. flags, nr_modules, modlist_paddr and rsdp_paddr are 0.
// The caller passes StartInfoGPA to the kernel in EBX.
func WriteStartInfo(mem Memory, cmdline string, ram []Region) error {
	if len(cmdline) > MaxCmdline {
		return fmt.Errorf("kernel command line is %d bytes; the limit is %d", len(cmdline), MaxCmdline)
	}
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		return fmt.Errorf("kernel command line contains a NUL byte at offset %d", i)
	}
	mm, err := Memmap(ram)
	if err != nil {
		return fmt.Errorf("write start info: %w", err)
	}
	if err := writeMemmap(mem, mm); err != nil {
		return fmt.Errorf("write start info: memory map: %w", err)
	}
	dst, err := slice(mem, CmdlineGPA, uint64(len(cmdline))+1)
	if err != nil {
		return fmt.Errorf("write start info: command line: %w", err)
	}
	dst[copy(dst, cmdline)] = 0
	si, err := slice(mem, StartInfoGPA, startInfoSize)
	if err != nil {
		return fmt.Errorf("write start info: %w", err)
	}
	clear(si)
	le.PutUint32(si[0:], StartInfoMagic)
	le.PutUint32(si[4:], StartInfoVersion)
	le.PutUint64(si[24:], CmdlineGPA)
	le.PutUint64(si[40:], MemmapGPA)
	le.PutUint32(si[48:], uint32(len(mm)))
	return nil
}

// writeMemmap encodes mm at MemmapGPA.
func writeMemmap(mem Memory, mm []MemmapEntry) error {
	dst, err := slice(mem, MemmapGPA, uint64(len(mm))*memmapEntrySize)
	if err != nil {
		return err
	}
	for i, e := range mm {
		b := dst[i*memmapEntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
		le.PutUint32(b[20:], 0)
	}
	return nil
}

// slice calls mem.Slice and checks the length of the result.
func slice(mem Memory, gpa, n uint64) ([]byte, error) {
	b, err := mem.Slice(gpa, n)
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) != n {
		return nil, fmt.Errorf("guest memory at %#x returned %d bytes, want %d", gpa, len(b), n)
	}
	return b, nil
}
