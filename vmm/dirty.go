package vmm

import (
	"fmt"

	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/memory"
)

// Dirty logging: KVM's log of vCPU writes, OR-ed with the VMM's own writes
// (memory.Guest.MarkDirty), in one bitmap indexed by memfd page number.
//
// This version uses KVM_GET_DIRTY_LOG without manual protection: each sync
// returns and clears the log and write-protects the pages again, so a page
// reported at sync N is caught again by any write after sync N.

// setSlots (re)registers every RAM region as a KVM memory slot.
func (v *VM) setSlots(flags uint32) error {
	for slot, r := range v.mem.Regions() {
		host, err := v.mem.Slice(r.GPA, r.Size)
		if err != nil {
			return err
		}
		if err := v.kvm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: uint32(slot), Flags: flags, Guest_phys_addr: r.GPA, Memory_size: r.Size,
			Userspace_addr: hostAddr(host),
		}); err != nil {
			return err
		}
	}
	return nil
}

// EnableDirtyLog starts KVM dirty logging on all of guest RAM and clears
// the VMM's own dirty bits: every write from now on is seen by the next
// SyncDirtyLog.
func (v *VM) EnableDirtyLog() error {
	if err := v.setSlots(kvm.MemLogDirtyPages); err != nil {
		return fmt.Errorf("enable dirty logging: %w", err)
	}
	v.mem.TakeDirty(make([]uint64, v.mem.DirtyWords()))
	return nil
}

// DisableDirtyLog stops KVM dirty logging.
func (v *VM) DisableDirtyLog() error {
	if err := v.setSlots(0); err != nil {
		return fmt.Errorf("disable dirty logging: %w", err)
	}
	return nil
}

// DirtyWords is the length of the bitmaps SyncDirtyLog fills.
func (v *VM) DirtyWords() int { return v.mem.DirtyWords() }

// SyncDirtyLog ORs into dst (DirtyWords long, bit i = memfd page i) every
// page written since the previous sync or EnableDirtyLog, by vCPUs or by
// the VMM, and starts a new epoch.
func (v *VM) SyncDirtyLog(dst []uint64) error {
	if len(dst) < v.mem.DirtyWords() {
		return fmt.Errorf("dirty bitmap of %d words, need %d", len(dst), v.mem.DirtyWords())
	}
	for slot, r := range v.mem.Regions() {
		first := r.Offset / memory.PageSize
		words := int((r.Size/memory.PageSize + 63) / 64)
		if first%64 != 0 {
			return fmt.Errorf("slot %d starts at memfd page %d, not a multiple of 64", slot, first)
		}
		buf := make([]uint64, words)
		if err := v.kvm.GetDirtyLog(uint32(slot), buf); err != nil {
			return err
		}
		out := dst[first/64:]
		for i, w := range buf {
			out[i] |= w
		}
	}
	v.mem.TakeDirty(dst)
	return nil
}
