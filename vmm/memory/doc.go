// Package memory owns guest RAM: one memfd, mapped MAP_SHARED into the VMM,
// split into regions laid out like QEMU's microvm and PC machines.
//
//	guest physical
//	0                     LowRAMTop (3 GiB)      4 GiB                  4 GiB + rest
//	├──── RAM slot 0 ─────┤── 32-bit MMIO hole ──├──── RAM slot 1 ────────┤
//	memfd offset 0 ...... low size               low size ............... size
//
// A guest smaller than 3 GiB has only slot 0. The memfd is sparse: pages the
// guest never touches cost the host nothing, and other processes (plugins)
// can map the same fd to read or write guest RAM without copies.
//
// The package does not know about KVM; vmm registers the regions as memory
// slots. It cannot stop a caller from writing through a slice it returned:
// writes into guest RAM that KVM's dirty log cannot see must be recorded by
// the writer.
package memory
