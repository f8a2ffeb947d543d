// Package pvh loads a PVH-bootable ELF kernel into guest RAM and writes the
// hvm_start_info structure the kernel expects in EBX at its 32-bit entry.
//
// A PVH kernel is an ordinary ELF32 or ELF64 executable (ET_EXEC, EM_386 or
// EM_X86_64, little-endian) that carries a note named "Xen" of type
// XEN_ELFNOTE_PHYS32_ENTRY (18) whose descriptor is the physical address of a
// 32-bit protected-mode entry point. [Parse] validates the image and finds
// the note in its PT_NOTE program headers; [Kernel.Load] copies every PT_LOAD
// segment to its physical address (p_paddr) and zeroes its bss;
// [WriteStartInfo] writes hvm_start_info, the memory map and the command line
// at fixed addresses in low memory.
//
// Guest-physical layout used by the reference VMM:
//
//	0x0000_0000 +---------------------------+
//	            | free RAM (real-mode IVT,  |  E820 type 1 (RAM)
//	            | unused by PVH)            |
//	0x0000_6000 +---------------------------+ StartInfoGPA
//	            | hvm_start_info (56 bytes) |
//	0x0000_6040 +---------------------------+ MemmapGPA
//	            | memmap: <= 128 entries of |
//	            | 24 bytes (ends <= 0x6c40) |
//	0x0000_7000 +---------------------------+ CmdlineGPA
//	            | command line, NUL-ended   |
//	            | (<= 4095 bytes + NUL)     |
//	0x0000_8000 +---------------------------+ BootInfoEnd
//	            | free RAM                  |
//	0x000a_0000 +---------------------------+
//	            | VGA / option ROM / BIOS   |  E820 type 2 (reserved)
//	0x0010_0000 +---------------------------+ 1 MiB
//	            | kernel PT_LOAD segments   |  E820 type 1 (RAM) up to the
//	            | (p_paddr, usually 1 MiB   |  end of the first region
//	            | or 16 MiB) + bss          |
//	            | ... free RAM ...          |
//	0xc000_0000 +---------------------------+ MMIOHoleStart (never RAM)
//	            | 32-bit MMIO hole          |
//	0x1_0000_0000 +-------------------------+ MMIOHoleEnd
//	            | further RAM regions       |  E820 type 1 each
//
// The area 0x6000-0x7fff belongs to the loader: a kernel segment that
// overlaps it is refused.
//
// What it cannot do: boot bzImage or compressed kernels (only the plain ELF
// with a PVH note), load modules or an initrd (nr_modules is always 0),
// provide ACPI tables (rsdp_paddr is always 0), or relocate a kernel
// (XEN_ELFNOTE_PHYS32_RELOC is ignored; segments go to p_paddr). It does not
// set up vCPU registers: the caller enters the kernel at [Kernel.Entry] in
// 32-bit protected mode with paging off and EBX = [StartInfoGPA].
package pvh
