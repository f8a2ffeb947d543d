package x86

import "github.com/ferryvm/ferry/vmm/kvm"

// MSR indices the boot list sets.
const (
	msrSysenterCS     = 0x174
	msrSysenterESP    = 0x175
	msrSysenterEIP    = 0x176
	msrMiscEnable     = 0x1a0
	msrMTRRDefType    = 0x2ff
	msrSTAR           = 0xc000_0081
	msrLSTAR          = 0xc000_0082
	msrCSTAR          = 0xc000_0083
	msrSyscallMask    = 0xc000_0084
	msrKernelGSBase   = 0xc000_0102
	msrTSC            = 0x10
	miscFastStrings   = 1
	mtrrEnable        = 1 << 11
	mtrrTypeWriteBack = 6
)

// BootMSRs are the MSR values a vCPU starts with (Firecracker's boot list):
// syscall MSRs cleared, the TSC at zero, fast strings on, and MTRRs enabled
// with write-back as the default type so guest RAM is cacheable.
func BootMSRs() []kvm.MSREntry {
	return []kvm.MSREntry{
		{Index: msrSysenterCS}, {Index: msrSysenterESP}, {Index: msrSysenterEIP},
		{Index: msrSTAR}, {Index: msrCSTAR}, {Index: msrKernelGSBase},
		{Index: msrSyscallMask}, {Index: msrLSTAR}, {Index: msrTSC},
		{Index: msrMiscEnable, Data: miscFastStrings},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWriteBack},
	}
}
