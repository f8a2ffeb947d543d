package vcpu

import (
	"fmt"

	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/state"
)

// MarshalBinary encodes s as the payload of a state.SecVCPU section:
//
//	MPState, Regs, Sregs, XCRs, DebugRegs, LAPIC, Events   KVM uapi structs
//	TSCKHz u32
//	Xsave  u32 length + bytes
//	MSRs   u32 count + kvm_msr_entry each
//	CPUID  u32 count + kvm_cpuid_entry2 each
//
// The structs are written field by field in little-endian order, which on
// x86-64 is the kernel's own layout (state.Writer.Struct).
func (s State) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("encode vCPU state: %w", err)
	}
	var w state.Writer
	w.Struct(&s.MPState)
	w.Struct(&s.Regs)
	w.Struct(&s.Sregs)
	w.Struct(&s.XCRs)
	w.Struct(&s.DebugRegs)
	w.Struct(&s.LAPIC)
	w.Struct(&s.Events)
	w.U32(s.TSCKHz)
	w.Blob(s.Xsave)
	w.U32(uint32(len(s.MSRs)))
	w.Struct(s.MSRs)
	w.U32(uint32(len(s.CPUID)))
	w.Struct(s.CPUID)
	return w.Bytes(), nil
}

// UnmarshalBinary decodes a payload written by MarshalBinary, checking
// every length against the bytes present and the limits.
func (s *State) UnmarshalBinary(b []byte) error {
	r := state.NewReader(b, "vCPU state")
	var st State
	r.Struct(&st.MPState)
	r.Struct(&st.Regs)
	r.Struct(&st.Sregs)
	r.Struct(&st.XCRs)
	r.Struct(&st.DebugRegs)
	r.Struct(&st.LAPIC)
	r.Struct(&st.Events)
	st.TSCKHz = r.U32()
	st.Xsave = r.Blob(MaxXsave, "XSAVE area")
	st.MSRs = make([]kvm.MSREntry, r.Count(MaxMSRs, "MSRs"))
	r.Struct(st.MSRs)
	st.CPUID = make([]kvm.CPUIDEntry2, r.Count(kvm.MaxCPUIDEntries, "CPUID entries"))
	r.Struct(st.CPUID)
	if err := r.Close(); err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		r.Fail("%v", err)
		return r.Err()
	}
	*s = st
	return nil
}

// Validate checks the lengths KVM would otherwise trip over.
func (s State) Validate() error {
	switch {
	case len(s.Xsave) < kvm.XsaveSize || len(s.Xsave) > MaxXsave:
		return fmt.Errorf("XSAVE area of %d bytes, want %d to %d", len(s.Xsave), kvm.XsaveSize, MaxXsave)
	case len(s.MSRs) > MaxMSRs:
		return fmt.Errorf("%d MSRs, at most %d", len(s.MSRs), MaxMSRs)
	case len(s.CPUID) == 0 || len(s.CPUID) > kvm.MaxCPUIDEntries:
		return fmt.Errorf("%d CPUID entries, want 1 to %d", len(s.CPUID), kvm.MaxCPUIDEntries)
	case s.XCRs.Nr_xcrs > uint32(len(s.XCRs.Xcrs)):
		return fmt.Errorf("%d XCRs, at most %d", s.XCRs.Nr_xcrs, len(s.XCRs.Xcrs))
	}
	return nil
}
