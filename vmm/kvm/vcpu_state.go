package kvm

import "fmt"

// get and set wrap the vCPU state ioctls with a uniform error.
func get[T any](c *VCPU, req uintptr, name string) (T, error) {
	var v T
	if _, err := ioctlPtr(c.fd, req, &v); err != nil {
		return v, fmt.Errorf("%s on vCPU %d: %w", name, c.id, err)
	}
	return v, nil
}

func set[T any](c *VCPU, req uintptr, name string, v T) error {
	if _, err := ioctlPtr(c.fd, req, &v); err != nil {
		return fmt.Errorf("%s on vCPU %d: %w", name, c.id, err)
	}
	return nil
}

// Regs issues KVM_GET_REGS.
func (c *VCPU) Regs() (Regs, error) { return get[Regs](c, ioctlGetRegs, "KVM_GET_REGS") }

// SetRegs issues KVM_SET_REGS.
func (c *VCPU) SetRegs(r Regs) error { return set(c, ioctlSetRegs, "KVM_SET_REGS", r) }

// Sregs issues KVM_GET_SREGS.
func (c *VCPU) Sregs() (Sregs, error) { return get[Sregs](c, ioctlGetSregs, "KVM_GET_SREGS") }

// SetSregs issues KVM_SET_SREGS.
func (c *VCPU) SetSregs(s Sregs) error { return set(c, ioctlSetSregs, "KVM_SET_SREGS", s) }

// FPU issues KVM_GET_FPU.
func (c *VCPU) FPU() (FPU, error) { return get[FPU](c, ioctlGetFPU, "KVM_GET_FPU") }

// SetFPU issues KVM_SET_FPU.
func (c *VCPU) SetFPU(f FPU) error { return set(c, ioctlSetFPU, "KVM_SET_FPU", f) }

// LAPIC issues KVM_GET_LAPIC.
func (c *VCPU) LAPIC() (LAPICState, error) { return get[LAPICState](c, ioctlGetLAPIC, "KVM_GET_LAPIC") }

// SetLAPIC issues KVM_SET_LAPIC.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	return set(c, ioctlSetLAPIC, "KVM_SET_LAPIC", l)
}

// MPState issues KVM_GET_MP_STATE.
func (c *VCPU) MPState() (MPState, error) {
	return get[MPState](c, ioctlGetMPState, "KVM_GET_MP_STATE")
}

// SetMPState issues KVM_SET_MP_STATE.
func (c *VCPU) SetMPState(m MPState) error {
	return set(c, ioctlSetMPState, "KVM_SET_MP_STATE", m)
}

// Events issues KVM_GET_VCPU_EVENTS.
func (c *VCPU) Events() (VCPUEvents, error) {
	return get[VCPUEvents](c, ioctlGetVCPUEvents, "KVM_GET_VCPU_EVENTS")
}

// SetEvents issues KVM_SET_VCPU_EVENTS.
func (c *VCPU) SetEvents(e VCPUEvents) error {
	return set(c, ioctlSetVCPUEvents, "KVM_SET_VCPU_EVENTS", e)
}

// DebugRegs issues KVM_GET_DEBUGREGS.
func (c *VCPU) DebugRegs() (DebugRegs, error) {
	return get[DebugRegs](c, ioctlGetDebugRegs, "KVM_GET_DEBUGREGS")
}

// SetDebugRegs issues KVM_SET_DEBUGREGS.
func (c *VCPU) SetDebugRegs(d DebugRegs) error {
	return set(c, ioctlSetDebugRegs, "KVM_SET_DEBUGREGS", d)
}

// Xsave issues KVM_GET_XSAVE.
func (c *VCPU) Xsave() (Xsave, error) { return get[Xsave](c, ioctlGetXsave, "KVM_GET_XSAVE") }

// SetXsave issues KVM_SET_XSAVE.
func (c *VCPU) SetXsave(x Xsave) error { return set(c, ioctlSetXsave, "KVM_SET_XSAVE", x) }

// XCRs issues KVM_GET_XCRS.
func (c *VCPU) XCRs() (XCRs, error) { return get[XCRs](c, ioctlGetXCRs, "KVM_GET_XCRS") }

// SetXCRs issues KVM_SET_XCRS.
func (c *VCPU) SetXCRs(x XCRs) error { return set(c, ioctlSetXCRs, "KVM_SET_XCRS", x) }

// SetCPUID2 sets the vCPU's CPUID leaves (at most MaxCPUIDEntries).
func (c *VCPU) SetCPUID2(entries []CPUIDEntry2) error {
	if len(entries) > MaxCPUIDEntries {
		return fmt.Errorf("KVM_SET_CPUID2: %d entries, at most %d", len(entries), MaxCPUIDEntries)
	}
	var cpuid CPUID2
	cpuid.Hdr.Nent = uint32(copy(cpuid.Entries[:], entries))
	if _, err := ioctlPtr(c.fd, ioctlSetCPUID2, &cpuid); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 on vCPU %d: %w", c.id, err)
	}
	return nil
}

// GetMSRs reads the MSRs named by indices; it returns how many were read
// (KVM stops at the first one it does not know).
func (c *VCPU) GetMSRs(indices []uint32) ([]MSREntry, error) {
	if len(indices) > MaxMSREntries {
		return nil, fmt.Errorf("KVM_GET_MSRS: %d MSRs, at most %d", len(indices), MaxMSREntries)
	}
	var m MSRs
	for i, idx := range indices {
		m.Entries[i].Index = idx
	}
	m.Hdr.Nmsrs = uint32(len(indices))
	n, err := ioctlPtr(c.fd, ioctlGetMSRs, &m)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_MSRS on vCPU %d: %w", c.id, err)
	}
	return append([]MSREntry(nil), m.Entries[:n]...), nil
}

// SetMSRs writes entries; it fails unless KVM accepted every one.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	if len(entries) > MaxMSREntries {
		return fmt.Errorf("KVM_SET_MSRS: %d MSRs, at most %d", len(entries), MaxMSREntries)
	}
	var m MSRs
	m.Hdr.Nmsrs = uint32(copy(m.Entries[:], entries))
	n, err := ioctlPtr(c.fd, ioctlSetMSRs, &m)
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: %w", c.id, err)
	}
	if int(n) != len(entries) {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: KVM refused MSR %#x (set %d of %d)",
			c.id, entries[n].Index, n, len(entries))
	}
	return nil
}

// TSCKHz returns the vCPU's TSC frequency in kHz.
func (c *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctl(c.fd, ioctlGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ on vCPU %d: %w", c.id, err)
	}
	return uint32(r), nil
}
