package x86

// MSRs that matter for migration beyond the boot list.
const (
	// MSRTSCDeadline is IA32_TSC_DEADLINE: restore it after IA32_TSC and
	// the LAPIC, or the timer it arms may be lost (vcpu.RestoreState has
	// the whole order and its reasons).
	MSRTSCDeadline = 0x6e0
	// MSRTSC is IA32_TSC.
	MSRTSC = msrTSC

	msrMTRRCap    = 0xfe
	msrMTRRPhys0  = 0x200 // base/mask pairs, 8 of them (MTRRcap.VCNT under KVM)
	msrMTRRFix64K = 0x250
	msrMTRRFix16K = 0x258 // and 0x259
	msrMTRRFix4K  = 0x268 // through 0x26f
	msrTSCAux     = 0xc000_0103
)

// unlistedMSRs are vCPU MSRs KVM keeps but leaves out of
// KVM_GET_MSR_INDEX_LIST (QEMU and Firecracker save them explicitly): the
// MTRRs, which the boot list sets, and TSC_AUX (RDTSCP/RDPID).
func unlistedMSRs() []uint32 {
	l := []uint32{msrMTRRDefType, msrMTRRFix64K, msrMTRRFix16K, msrMTRRFix16K + 1, msrTSCAux}
	for i := uint32(0); i < 8; i++ {
		l = append(l, msrMTRRFix4K+i, msrMTRRPhys0+2*i, msrMTRRPhys0+2*i+1)
	}
	return l
}

// MigrationMSRs returns the MSR indices to save for a vCPU: KVM's own
// list (kvmList, from KVM_GET_MSR_INDEX_LIST, which includes KVM's PV
// MSRs 0x4b564dxx: kvmclock, async PF, steal time, PV EOI, poll control)
// plus the MSRs KVM keeps without listing them, each once, with the TSC
// deadline last. MTRRcap is left out: it is read-only. The caller keeps
// only those KVM_GET_MSRS accepts on the vCPU.
func MigrationMSRs(kvmList []uint32) []uint32 {
	seen := map[uint32]bool{msrMTRRCap: true, MSRTSCDeadline: true}
	var out []uint32
	deadline := false
	for _, l := range [][]uint32{kvmList, unlistedMSRs()} {
		for _, idx := range l {
			if idx == MSRTSCDeadline {
				deadline = true
			}
			if !seen[idx] {
				seen[idx] = true
				out = append(out, idx)
			}
		}
	}
	if deadline {
		out = append(out, MSRTSCDeadline)
	}
	return out
}
