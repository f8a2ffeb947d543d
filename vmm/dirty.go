package vmm

import (
	"fmt"
	"slices"

	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/memory"
)

// Dirty logging: KVM's log of vCPU writes, OR-ed with the VMM's own writes
// (memory.Guest.MarkDirty), in one bitmap indexed by memfd page number.
//
// Where KVM offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, a sync reads a
// slot's log with KVM_GET_DIRTY_LOG, which then leaves it alone, and
// re-protects exactly the pages it read with KVM_CLEAR_DIRTY_LOG, one
// clearChunkPages chunk at a time and only chunks with a dirty page: KVM
// takes its MMU lock per chunk instead of once for the whole slot, and an
// idle stretch of a large guest costs no ioctl. Elsewhere GET_DIRTY_LOG
// reads, clears and re-protects the whole slot in one call. Either way a
// page reported at sync N is write-protected again before the sync
// returns, so any write after it is caught by sync N+1. (Re-protecting
// at sync time, not later when a page is sent as QEMU does, is deliberate:
// a hint must never be able to clear a dirty bit the log has not yet
// re-armed; ../shared/reference/virt-facts.md 2.4.) Dirty logging
// starts without KVM_DIRTY_LOG_INITIALLY_SET: enabling it write-protects
// all of RAM once.

// clearChunkPages is how many pages one KVM_CLEAR_DIRTY_LOG covers: 1 GiB
// of guest RAM, QEMU's default clear chunk (a multiple of 64, as KVM
// requires of every chunk but a slot's last).
const clearChunkPages = 1 << 18

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
	if !v.manualProtectTried {
		v.manualProtectTried = true
		if v.kvm.CheckExtension(kvm.CapManualDirtyLogProtect2)&kvm.DirtyLogManualProtect != 0 {
			if err := v.kvm.EnableCap(kvm.CapManualDirtyLogProtect2, kvm.DirtyLogManualProtect); err != nil {
				v.log.Warn("dirty log: manual protection offered but refused; syncs re-protect whole slots", "err", err)
			} else {
				v.manualProtect = true
			}
		}
		v.log.Debug("dirty log", "manual_protect", v.manualProtect, "clear_chunk_pages", clearChunkPages)
	}
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
		if v.manualProtect {
			if err := v.clearDirtyLog(uint32(slot), r.Size/memory.PageSize, buf); err != nil {
				return err
			}
		}
		out := dst[first/64:]
		for i, w := range buf {
			out[i] |= w
		}
	}
	v.mem.TakeDirty(dst)
	return nil
}

// clearDirtyLog re-protects the pages set in bitmap, a slot of pages
// pages, one clearChunkPages chunk at a time, skipping clean chunks.
func (v *VM) clearDirtyLog(slot uint32, pages uint64, bitmap []uint64) error {
	for first := uint64(0); first < pages; first += clearChunkPages {
		n := min(clearChunkPages, pages-first)
		words := bitmap[first/64 : (first+n+63)/64]
		if !slices.ContainsFunc(words, func(w uint64) bool { return w != 0 }) {
			continue
		}
		if err := v.kvm.ClearDirtyLog(slot, first, uint32(n), words); err != nil {
			return err
		}
	}
	return nil
}
