package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine file descriptor.
type VM struct {
	fd      int
	sys     *System
	runSize int
}

// System returns the /dev/kvm the VM was created from.
func (vm *VM) System() *System { return vm.sys }

// Close closes the VM fd; the kernel frees the VM once its vCPUs are closed too.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// CheckExtension asks the VM (not /dev/kvm) about cap; some answers differ per VM.
func (vm *VM) CheckExtension(cap int) int {
	r, err := ioctl(vm.fd, ioctlCheckExtension, uintptr(cap))
	if err != nil {
		return 0
	}
	return int(r)
}

// SetUserMemoryRegion installs, changes or (with size 0) removes a memory slot.
func (vm *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	if _, err := ioctlPtr(vm.fd, ioctlSetUserMemoryRegion, &r); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d gpa %#x size %#x: %w",
			r.Slot, r.Guest_phys_addr, r.Memory_size, err)
	}
	return nil
}

// SetTSSAddr places the three pages Intel hosts need for real-mode emulation.
func (vm *VM) SetTSSAddr(gpa uint64) error {
	if _, err := ioctl(vm.fd, ioctlSetTSSAddr, uintptr(gpa)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
	}
	return nil
}

// SetIdentityMapAddr places the identity-map page; call before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(gpa uint64) error {
	if _, err := ioctlPtr(vm.fd, ioctlSetIdentityMapAddr, &gpa); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PICs, IOAPIC and per-vCPU LAPICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, ioctlCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT; needs the in-kernel irqchip.
func (vm *VM) CreatePIT2(flags uint32) error {
	cfg := PITConfig{Flags: flags}
	if _, err := ioctlPtr(vm.fd, ioctlCreatePIT2, &cfg); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IRQLine sets the level of a GSI on the in-kernel irqchip.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := IRQLevel{Irq: gsi}
	if high {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, ioctlIRQLine, &l); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d: %w", gsi, err)
	}
	return nil
}

// EnableCap enables a VM capability with its arguments.
func (vm *VM) EnableCap(cap uint32, args ...uint64) error {
	c := EnableCap{Cap: cap}
	copy(c.Args[:], args)
	if _, err := ioctlPtr(vm.fd, ioctlEnableCap, &c); err != nil {
		return fmt.Errorf("KVM_ENABLE_CAP %d: %w", cap, err)
	}
	return nil
}

// GetDirtyLog copies the slot's dirty bitmap (one bit per page, 64-bit
// words, little-endian) into bitmap, which must cover the whole slot.
// Without manual protection this also clears the log and write-protects the
// pages again.
func (vm *VM) GetDirtyLog(slot uint32, bitmap []uint64) error {
	if len(bitmap) == 0 {
		return nil
	}
	d := DirtyLog{Slot: slot}
	setDirtyBitmap(&d, bitmap)
	if _, err := ioctlPtr(vm.fd, ioctlGetDirtyLog, &d); err != nil {
		return fmt.Errorf("KVM_GET_DIRTY_LOG slot %d: %w", slot, err)
	}
	return nil
}

// ClearDirtyLog re-protects the pages set in bitmap, starting at firstPage of
// the slot (a multiple of 64), when manual protection is enabled.
func (vm *VM) ClearDirtyLog(slot uint32, firstPage uint64, numPages uint32, bitmap []uint64) error {
	if numPages == 0 {
		return nil
	}
	if firstPage%64 != 0 || uint64(len(bitmap))*64 < uint64(numPages) {
		return fmt.Errorf("KVM_CLEAR_DIRTY_LOG: first page %d not 64-aligned or bitmap too short", firstPage)
	}
	c := ClearDirtyLog{Slot: slot, First_page: firstPage, Num_pages: numPages}
	setClearBitmap(&c, bitmap)
	if _, err := ioctlPtr(vm.fd, ioctlClearDirtyLog, &c); err != nil {
		return fmt.Errorf("KVM_CLEAR_DIRTY_LOG slot %d: %w", slot, err)
	}
	return nil
}
