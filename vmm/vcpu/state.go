package vcpu

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/kvm"
)

// State is everything KVM holds for one x86 vCPU that a migration must
// carry (as Firecracker's VcpuState): the registers, the
// XSAVE area (x87, SSE, AVX... all in one, so no separate FPU), the LAPIC,
// the MSRs KVM accepts from the migration list, pending events, the
// multiprocessing state, the CPUID the vCPU was given and its TSC rate.
type State struct {
	MPState   kvm.MPState
	Regs      kvm.Regs
	Sregs     kvm.Sregs
	Xsave     []byte // KVM_GET_XSAVE2 area, at least kvm.XsaveSize bytes
	XCRs      kvm.XCRs
	DebugRegs kvm.DebugRegs
	LAPIC     kvm.LAPICState
	MSRs      []kvm.MSREntry // TSC deadline, if any, last
	Events    kvm.VCPUEvents
	CPUID     []kvm.CPUIDEntry2
	TSCKHz    uint32 // 0: unknown
}

// Limits on decoded states.
const (
	MaxXsave = 64 << 10 // AMX makes today's largest area about 11 KiB
	MaxMSRs  = 1024
)

// SaveState reads the vCPU's state. It must run on the vCPU's thread with
// the vCPU parked (VCPU.Do): KVM_GET_VCPU_EVENTS is unsafe while other
// vCPUs run. msrs is x86.MigrationMSRs of KVM's list; the MSRs KVM refuses
// to read are left out. xsaveSize is kvm.VM.XsaveSize2 (0: legacy XSAVE).
//
// The order is QEMU's, kept by Firecracker and Cloud Hypervisor:
// KVM_GET_MP_STATE first, because it lets the LAPIC accept pending INIT and
// SIPI events and so changes other state; KVM_GET_VCPU_EVENTS last.
func SaveState(k *kvm.VCPU, msrs []uint32, xsaveSize int) (State, error) {
	var s State
	var err error
	if s.MPState, err = k.MPState(); err != nil {
		return s, err
	}
	if s.Regs, err = k.Regs(); err != nil {
		return s, err
	}
	if s.Sregs, err = k.Sregs(); err != nil {
		return s, err
	}
	if s.Xsave, err = saveXsave(k, xsaveSize); err != nil {
		return s, err
	}
	if s.XCRs, err = k.XCRs(); err != nil {
		return s, err
	}
	if s.DebugRegs, err = k.DebugRegs(); err != nil {
		return s, err
	}
	if s.LAPIC, err = k.LAPIC(); err != nil {
		return s, err
	}
	if s.MSRs, err = readableMSRs(k, msrs); err != nil {
		return s, err
	}
	if s.TSCKHz, err = k.TSCKHz(); err != nil {
		s.TSCKHz = 0 // optional: the restore then keeps the target's rate
	}
	if s.CPUID, err = k.CPUID2(); err != nil {
		return s, err
	}
	s.Events, err = k.Events()
	return s, err
}

func saveXsave(k *kvm.VCPU, size int) ([]byte, error) {
	if size > 0 {
		return k.Xsave2(size)
	}
	x, err := k.Xsave()
	if err != nil {
		return nil, err
	}
	w := make([]byte, 0, kvm.XsaveSize)
	for _, v := range x.Region {
		w = append(w, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return w, nil
}

// readableMSRs reads msrs in chunks; KVM_GET_MSRS stops at the first MSR
// it does not know, which is skipped.
func readableMSRs(k *kvm.VCPU, msrs []uint32) ([]kvm.MSREntry, error) {
	var out []kvm.MSREntry
	for len(msrs) > 0 {
		n := min(len(msrs), kvm.MaxMSREntries)
		got, err := k.GetMSRs(msrs[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		if len(got) < n {
			n = len(got) + 1 // skip the refused one
		}
		msrs = msrs[n:]
	}
	return out, nil
}

// tscScalingPPM is how far the target's TSC rate may be from the saved
// one before RestoreState asks KVM to scale it (Firecracker's threshold).
const tscScalingPPM = 250

// RestoreState writes s into a vCPU that has not run yet, on its thread.
// xsaveSize is kvm.VM.XsaveSize2 on the target. The order, with its
// reasons:
//
//  1. KVM_SET_TSC_KHZ, when the rates differ by more than 250 ppm, before
//     anything reads or writes the TSC.
//  2. KVM_SET_CPUID2 first of the state: KVM drops MSRs the CPUID does not
//     advertise, and SET_MP_STATE depends on kvm_vcpu_is_bsp.
//  3. KVM_SET_MP_STATE, then KVM_SET_REGS (which clears pending exceptions,
//     so it must precede SET_VCPU_EVENTS), then KVM_SET_SREGS (which sets
//     the APIC base).
//  4. KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS.
//  5. KVM_SET_LAPIC after SREGS (APIC base) and before the MSRs (the TSC
//     deadline only sticks with a configured LAPIC).
//  6. KVM_SET_MSRS, IA32_TSC before IA32_TSC_DEADLINE, which goes last; a
//     zero deadline becomes the TSC value so no timer is lost.
//  7. KVM_SET_VCPU_EVENTS, then KVM_KVMCLOCK_CTRL (EINVAL without a guest
//     kvmclock is fine).
func RestoreState(k *kvm.VCPU, s State, xsaveSize int) error {
	if err := restoreTSCRate(k, s.TSCKHz); err != nil {
		return err
	}
	if err := k.SetCPUID2(s.CPUID); err != nil {
		return err
	}
	if err := k.SetMPState(s.MPState); err != nil {
		return err
	}
	if err := k.SetRegs(s.Regs); err != nil {
		return err
	}
	if err := k.SetSregs(s.Sregs); err != nil {
		return err
	}
	if err := k.SetXsaveBytes(s.Xsave, xsaveSize); err != nil {
		return err
	}
	if err := k.SetXCRs(s.XCRs); err != nil {
		return err
	}
	if err := k.SetDebugRegs(s.DebugRegs); err != nil {
		return err
	}
	if err := k.SetLAPIC(s.LAPIC); err != nil {
		return err
	}
	if err := restoreMSRs(k, s.MSRs); err != nil {
		return err
	}
	if err := k.SetEvents(s.Events); err != nil {
		return err
	}
	if err := k.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func restoreTSCRate(k *kvm.VCPU, saved uint32) error {
	if saved == 0 {
		return nil
	}
	cur, err := k.TSCKHz()
	if err != nil {
		return nil // no rate to compare: keep the target's
	}
	diff := int64(cur) - int64(saved)
	if diff < 0 {
		diff = -diff
	}
	if diff*1_000_000 <= int64(saved)*tscScalingPPM {
		return nil
	}
	if err := k.SetTSCKHz(saved); err != nil {
		return fmt.Errorf("the guest's TSC ran at %d kHz, this host's at %d kHz, and KVM cannot scale it: %w", saved, cur, err)
	}
	return nil
}

func restoreMSRs(k *kvm.VCPU, msrs []kvm.MSREntry) error {
	var tsc uint64
	var deadline []kvm.MSREntry
	rest := make([]kvm.MSREntry, 0, len(msrs))
	for _, e := range msrs {
		switch e.Index {
		case x86.MSRTSCDeadline:
			deadline = append(deadline, e)
			continue
		case x86.MSRTSC:
			tsc = e.Data
		}
		rest = append(rest, e)
	}
	for _, e := range deadline {
		if e.Data == 0 {
			e.Data = tsc
		}
		rest = append(rest, e) // a chunk boundary before it only helps
	}
	for len(rest) > 0 {
		n := min(len(rest), kvm.MaxMSREntries)
		if err := k.SetMSRs(rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}
