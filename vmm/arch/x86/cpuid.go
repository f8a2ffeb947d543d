package x86

import "github.com/ferryvm/ferry/vmm/kvm"

// Hypervisor CPUID leaves (KVM's range starts at 0x40000000).
const (
	leafHypervisorBase = 0x4000_0000
	// LeafTimingInfo is the VMware-defined timing leaf that KVM guests
	// (Linux, Ferry's test guest) read: EAX = TSC kHz, EBX = APIC bus kHz.
	LeafTimingInfo = 0x4000_0010
	apicBusKHz     = 1_000_000
)

// CPUID returns the leaves for vCPU id of ncpus, from what KVM supports:
// APIC ids, the hypervisor bit, and the timing leaf carrying the TSC
// frequency (tscKHz 0 leaves it out) so a guest needs no calibration.
func CPUID(supported []kvm.CPUIDEntry2, id, ncpus int, tscKHz uint32) []kvm.CPUIDEntry2 {
	out := make([]kvm.CPUIDEntry2, 0, len(supported)+1)
	for _, e := range supported {
		switch e.Function {
		case 0x1:
			e.Ebx = e.Ebx&0xff | uint32(id)<<24 | uint32(ncpus)<<16 | 8<<8 // APIC id, logical CPUs, CLFLUSH 64 bytes
			e.Ecx |= 1 << 31                                               // running under a hypervisor
			if ncpus > 1 {
				e.Edx |= 1 << 28 // HTT: the logical-CPU count above is meaningful
			}
		case 0xb, 0x1f:
			e.Edx = uint32(id) // x2APIC id
		case leafHypervisorBase:
			if tscKHz != 0 && e.Eax < LeafTimingInfo {
				e.Eax = LeafTimingInfo
			}
		case LeafTimingInfo:
			continue // replaced below
		}
		out = append(out, e)
	}
	if tscKHz != 0 {
		out = append(out, kvm.CPUIDEntry2{Function: LeafTimingInfo, Eax: tscKHz, Ebx: apicBusKHz})
	}
	return out
}
