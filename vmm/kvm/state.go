package kvm

import "fmt"

// The ioctls that save and restore a VM for migration: VM-wide devices
// (PIT, PICs, IOAPIC, kvmclock) and the vCPU state the older accessors in
// vcpu_state.go do not cover.

// Clock issues KVM_GET_CLOCK: the kvmclock value (ns) and, on hosts whose
// clocksource is the TSC, the realtime/host-TSC pair it was read at.
func (vm *VM) Clock() (ClockData, error) {
	var c ClockData
	if _, err := ioctlPtr(vm.fd, ioctlGetClock, &c); err != nil {
		return c, fmt.Errorf("KVM_GET_CLOCK: %w", err)
	}
	return c, nil
}

// SetClock issues KVM_SET_CLOCK. With ClockRealtime in c.Flags KVM
// advances the clock by the wall time elapsed since c.Realtime.
func (vm *VM) SetClock(c ClockData) error {
	if _, err := ioctlPtr(vm.fd, ioctlSetClock, &c); err != nil {
		return fmt.Errorf("KVM_SET_CLOCK: %w", err)
	}
	return nil
}

// IRQChip issues KVM_GET_IRQCHIP for chip id (IRQChipPICMaster,
// IRQChipPICSlave or IRQChipIOAPIC).
func (vm *VM) IRQChip(id uint32) (IRQChip, error) {
	c := IRQChip{Id: id}
	if _, err := ioctlPtr(vm.fd, ioctlGetIRQChip, &c); err != nil {
		return c, fmt.Errorf("KVM_GET_IRQCHIP %d: %w", id, err)
	}
	return c, nil
}

// SetIRQChip issues KVM_SET_IRQCHIP for c.Id.
func (vm *VM) SetIRQChip(c IRQChip) error {
	if _, err := ioctlPtr(vm.fd, ioctlSetIRQChip, &c); err != nil {
		return fmt.Errorf("KVM_SET_IRQCHIP %d: %w", c.Id, err)
	}
	return nil
}

// PIT2 issues KVM_GET_PIT2.
func (vm *VM) PIT2() (PITState2, error) {
	var p PITState2
	if _, err := ioctlPtr(vm.fd, ioctlGetPIT2, &p); err != nil {
		return p, fmt.Errorf("KVM_GET_PIT2: %w", err)
	}
	return p, nil
}

// SetPIT2 issues KVM_SET_PIT2.
func (vm *VM) SetPIT2(p PITState2) error {
	if _, err := ioctlPtr(vm.fd, ioctlSetPIT2, &p); err != nil {
		return fmt.Errorf("KVM_SET_PIT2: %w", err)
	}
	return nil
}

// XsaveSize2 is the buffer size KVM_GET_XSAVE2 needs on this VM
// (KVM_CAP_XSAVE2), or 0 when the kernel only has KVM_GET_XSAVE.
func (vm *VM) XsaveSize2() int {
	n := vm.CheckExtension(CapXSAVE2)
	if n < XsaveSize {
		return 0
	}
	return n
}

// CPUID2 issues KVM_GET_CPUID2: the leaves set with SetCPUID2.
func (c *VCPU) CPUID2() ([]CPUIDEntry2, error) {
	var cpuid CPUID2
	cpuid.Hdr.Nent = MaxCPUIDEntries
	if _, err := ioctlPtr(c.fd, ioctlGetCPUID2, &cpuid); err != nil {
		return nil, fmt.Errorf("KVM_GET_CPUID2 on vCPU %d: %w", c.id, err)
	}
	n := min(int(cpuid.Hdr.Nent), MaxCPUIDEntries)
	return append([]CPUIDEntry2(nil), cpuid.Entries[:n]...), nil
}

// Xsave2 issues KVM_GET_XSAVE2 into a buffer of size bytes (from
// VM.XsaveSize2, at least XsaveSize): the whole XSAVE area, including
// dynamically enabled components past the legacy 4 KiB.
func (c *VCPU) Xsave2(size int) ([]byte, error) {
	if size < XsaveSize {
		return nil, fmt.Errorf("KVM_GET_XSAVE2 on vCPU %d: buffer of %d bytes, need at least %d", c.id, size, XsaveSize)
	}
	b := make([]byte, size)
	if _, err := ioctlBytes(c.fd, ioctlGetXsave2, b); err != nil {
		return nil, fmt.Errorf("KVM_GET_XSAVE2 on vCPU %d: %w", c.id, err)
	}
	return b, nil
}

// SetXsaveBytes issues KVM_SET_XSAVE with an area saved by Xsave2 or
// Xsave. KVM reads as many bytes as its own XSAVE2 size (size, from
// VM.XsaveSize2; 0 means the legacy 4 KiB), so the area is zero-padded up
// to that.
func (c *VCPU) SetXsaveBytes(area []byte, size int) error {
	size = max(size, XsaveSize, len(area))
	b := make([]byte, size)
	copy(b, area)
	if _, err := ioctlBytes(c.fd, ioctlSetXsave, b); err != nil {
		return fmt.Errorf("KVM_SET_XSAVE on vCPU %d: %w", c.id, err)
	}
	return nil
}

// SetTSCKHz issues KVM_SET_TSC_KHZ: the guest's TSC runs at khz from now
// (TSC scaling; KVM refuses rates it cannot scale to).
func (c *VCPU) SetTSCKHz(khz uint32) error {
	if _, err := ioctl(c.fd, ioctlSetTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("KVM_SET_TSC_KHZ %d on vCPU %d: %w", khz, c.id, err)
	}
	return nil
}

// KVMClockCtrl issues KVM_KVMCLOCK_CTRL: it tells a guest using kvmclock
// that the vCPU was paused, so its soft-lockup watchdog does not fire.
// KVM answers EINVAL when the guest has no kvmclock; callers may ignore it.
func (c *VCPU) KVMClockCtrl() error {
	if _, err := ioctl(c.fd, ioctlKVMClockCtrl, 0); err != nil {
		return fmt.Errorf("KVM_KVMCLOCK_CTRL on vCPU %d: %w", c.id, err)
	}
	return nil
}
