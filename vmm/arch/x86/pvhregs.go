package x86

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// BootGDTGPA is where the VMM writes the GDT that describes the PVH entry
// segments: in the boot-info page that x86/pvh protects, after the largest
// memory map (pvh.MemmapGPA + 128*24 = 0x6c40) and before the command line.
const BootGDTGPA = 0x6f00

// Selectors of the boot GDT.
const (
	selCode32 = 0x08
	selData32 = 0x10
	selTSS32  = 0x18
)

// bootGDT: null, flat 32-bit code, flat 32-bit data, a 32-bit TSS at 0.
var bootGDT = [4]uint64{
	0,
	0x00cf_9b00_0000_ffff,
	0x00cf_9300_0000_ffff,
	0x0000_8b00_0000_0067,
}

// Memory is guest RAM as x86 writes it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// WriteBootGDT writes the boot GDT into guest RAM, so a guest that reloads
// a segment register before its own lgdt still finds what sregs describe.
func WriteBootGDT(mem Memory) error {
	b, err := mem.Slice(BootGDTGPA, uint64(len(bootGDT))*8)
	if err != nil {
		return fmt.Errorf("write boot GDT: %w", err)
	}
	for i, d := range bootGDT {
		binary.LittleEndian.PutUint64(b[i*8:], d)
	}
	return nil
}

// PVHEntry returns the register state the PVH ABI prescribes: 32-bit
// protected mode, paging off, flat 4 GiB segments, EBX = start_info.
func PVHEntry(entry uint32, startInfo uint64, sregs kvm.Sregs) (kvm.Regs, kvm.Sregs) {
	regs := kvm.Regs{Rip: uint64(entry), Rbx: startInfo, Rflags: 0x2}
	flat := func(sel uint16, typ uint8) kvm.Segment {
		return kvm.Segment{Base: 0, Limit: 0xffff_ffff, Selector: sel, Type: typ,
			Present: 1, Dpl: 0, Db: 1, S: 1, G: 1}
	}
	sregs.Cs = flat(selCode32, 0xb) // execute/read, accessed
	data := flat(selData32, 0x3)    // read/write, accessed
	sregs.Ds, sregs.Es, sregs.Fs, sregs.Gs, sregs.Ss = data, data, data, data, data
	sregs.Tr = kvm.Segment{Limit: 0x67, Selector: selTSS32, Type: 0xb, Present: 1} // busy 32-bit TSS
	sregs.Ldt = kvm.Segment{Type: 0x2, Present: 1, Unusable: 1}
	sregs.Gdt = kvm.Dtable{Base: BootGDTGPA, Limit: uint16(len(bootGDT)*8 - 1)}
	sregs.Idt = kvm.Dtable{}
	sregs.Cr0 = 0x11 // PE, ET
	sregs.Cr3, sregs.Cr4, sregs.Efer = 0, 0, 0
	return regs, sregs
}

// BootFPU is the x87/SSE state at reset: FCW 0x37f, MXCSR 0x1f80.
func BootFPU() kvm.FPU { return kvm.FPU{Fcw: 0x37f, Mxcsr: 0x1f80} }
