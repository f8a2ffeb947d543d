// Copyright and licensing: see the repository's LICENSE.

//go:build ignore

// This file is the input of `go tool cgo -godefs`; it is not compiled.
// Regenerate ztypes_linux_amd64.go with `make godefs` (see the Makefile).

package kvm

/*
#include <linux/kvm.h>
#include <asm/kvm.h>

// The kvm_run union members Ferry decodes, named so godefs can emit them.
struct ferry_run_io {
	__u8 direction;
	__u8 size;
	__u16 port;
	__u32 count;
	__u64 data_offset;
};
struct ferry_run_mmio {
	__u64 phys_addr;
	__u8  data[8];
	__u32 len;
	__u8  is_write;
};
struct ferry_run_internal {
	__u32 suberror;
	__u32 ndata;
	__u64 data[16];
};
struct ferry_run_fail_entry {
	__u64 hardware_entry_failure_reason;
	__u32 cpu;
};
struct ferry_run_system_event {
	__u32 type;
	__u32 ndata;
	__u64 data[16];
};

// Fixed-capacity versions of the ioctl arguments that end in a flexible array.
#define FERRY_MAX_CPUID 256
#define FERRY_MAX_MSRS 256
struct ferry_cpuid2 {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 entries[FERRY_MAX_CPUID];
};
struct ferry_msrs {
	struct kvm_msrs hdr;
	struct kvm_msr_entry entries[FERRY_MAX_MSRS];
};
// The fixed part of struct kvm_run, before its exit union (at RunUnionOffset).
struct ferry_run_header {
	__u8 request_interrupt_window;
	__u8 immediate_exit;
	__u8 padding1[6];
	__u32 exit_reason;
	__u8 ready_for_interrupt_injection;
	__u8 if_flag;
	__u16 flags;
	__u64 cr8;
	__u64 apic_base;
};
// kvm_vcpu_events is saved and restored whole; Ferry does not look inside.
struct ferry_vcpu_events {
	__u8 raw[sizeof(struct kvm_vcpu_events)];
};
struct ferry_msr_list {
	struct kvm_msr_list hdr;
	__u32 indices[1024];
};
*/
import "C"

// Ioctls on /dev/kvm.
const (
	ioctlGetAPIVersion          = C.KVM_GET_API_VERSION
	ioctlCreateVM               = C.KVM_CREATE_VM
	ioctlCheckExtension         = C.KVM_CHECK_EXTENSION
	ioctlGetVCPUMmapSize        = C.KVM_GET_VCPU_MMAP_SIZE
	ioctlGetSupportedCPUID      = C.KVM_GET_SUPPORTED_CPUID
	ioctlGetMSRIndexList        = C.KVM_GET_MSR_INDEX_LIST
	ioctlGetMSRFeatureIndexList = C.KVM_GET_MSR_FEATURE_INDEX_LIST
)

// Ioctls on a VM fd.
const (
	ioctlCreateVCPU          = C.KVM_CREATE_VCPU
	ioctlSetUserMemoryRegion = C.KVM_SET_USER_MEMORY_REGION
	ioctlSetTSSAddr          = C.KVM_SET_TSS_ADDR
	ioctlSetIdentityMapAddr  = C.KVM_SET_IDENTITY_MAP_ADDR
	ioctlCreateIRQChip       = C.KVM_CREATE_IRQCHIP
	ioctlCreatePIT2          = C.KVM_CREATE_PIT2
	ioctlIRQLine             = C.KVM_IRQ_LINE
	ioctlGetDirtyLog         = C.KVM_GET_DIRTY_LOG
	ioctlClearDirtyLog       = C.KVM_CLEAR_DIRTY_LOG
	ioctlEnableCap           = C.KVM_ENABLE_CAP
	ioctlGetClock            = C.KVM_GET_CLOCK
	ioctlSetClock            = C.KVM_SET_CLOCK
	ioctlGetIRQChip          = C.KVM_GET_IRQCHIP
	ioctlSetIRQChip          = C.KVM_SET_IRQCHIP
	ioctlGetPIT2             = C.KVM_GET_PIT2
	ioctlSetPIT2             = C.KVM_SET_PIT2
)

// Ioctls on a vCPU fd.
const (
	ioctlRun           = C.KVM_RUN
	ioctlGetRegs       = C.KVM_GET_REGS
	ioctlSetRegs       = C.KVM_SET_REGS
	ioctlGetSregs      = C.KVM_GET_SREGS
	ioctlSetSregs      = C.KVM_SET_SREGS
	ioctlGetFPU        = C.KVM_GET_FPU
	ioctlSetFPU        = C.KVM_SET_FPU
	ioctlGetMSRs       = C.KVM_GET_MSRS
	ioctlSetMSRs       = C.KVM_SET_MSRS
	ioctlSetCPUID2     = C.KVM_SET_CPUID2
	ioctlGetCPUID2     = C.KVM_GET_CPUID2
	ioctlGetLAPIC      = C.KVM_GET_LAPIC
	ioctlSetLAPIC      = C.KVM_SET_LAPIC
	ioctlGetMPState    = C.KVM_GET_MP_STATE
	ioctlSetMPState    = C.KVM_SET_MP_STATE
	ioctlGetVCPUEvents = C.KVM_GET_VCPU_EVENTS
	ioctlSetVCPUEvents = C.KVM_SET_VCPU_EVENTS
	ioctlGetDebugRegs  = C.KVM_GET_DEBUGREGS
	ioctlSetDebugRegs  = C.KVM_SET_DEBUGREGS
	ioctlGetXsave      = C.KVM_GET_XSAVE
	ioctlGetXsave2     = C.KVM_GET_XSAVE2
	ioctlSetXsave      = C.KVM_SET_XSAVE
	ioctlGetXCRs       = C.KVM_GET_XCRS
	ioctlSetXCRs       = C.KVM_SET_XCRS
	ioctlGetTSCKHz     = C.KVM_GET_TSC_KHZ
	ioctlSetTSCKHz     = C.KVM_SET_TSC_KHZ
	ioctlKVMClockCtrl  = C.KVM_KVMCLOCK_CTRL
)

// APIVersion is the only KVM API version that exists.
const APIVersion = C.KVM_API_VERSION

// Exit reasons in Run.Exit_reason.
const (
	ExitUnknown       = C.KVM_EXIT_UNKNOWN
	ExitException     = C.KVM_EXIT_EXCEPTION
	ExitIO            = C.KVM_EXIT_IO
	ExitHypercall     = C.KVM_EXIT_HYPERCALL
	ExitDebug         = C.KVM_EXIT_DEBUG
	ExitHLT           = C.KVM_EXIT_HLT
	ExitMMIO          = C.KVM_EXIT_MMIO
	ExitIRQWindowOpen = C.KVM_EXIT_IRQ_WINDOW_OPEN
	ExitShutdown      = C.KVM_EXIT_SHUTDOWN
	ExitFailEntry     = C.KVM_EXIT_FAIL_ENTRY
	ExitIntr          = C.KVM_EXIT_INTR
	ExitInternalError = C.KVM_EXIT_INTERNAL_ERROR
	ExitSystemEvent   = C.KVM_EXIT_SYSTEM_EVENT
	ExitDirtyRingFull = C.KVM_EXIT_DIRTY_RING_FULL

	ExitIOIn  = C.KVM_EXIT_IO_IN
	ExitIOOut = C.KVM_EXIT_IO_OUT
)

// Capabilities for KVM_CHECK_EXTENSION and KVM_ENABLE_CAP.
const (
	CapIRQChip                = C.KVM_CAP_IRQCHIP
	CapPIT2                   = C.KVM_CAP_PIT2
	CapSetTSSAddr             = C.KVM_CAP_SET_TSS_ADDR
	CapUserMemory             = C.KVM_CAP_USER_MEMORY
	CapNrMemslots             = C.KVM_CAP_NR_MEMSLOTS
	CapImmediateExit          = C.KVM_CAP_IMMEDIATE_EXIT
	CapGetTSCKHz              = C.KVM_CAP_GET_TSC_KHZ
	CapTSCControl             = C.KVM_CAP_TSC_CONTROL
	CapManualDirtyLogProtect2 = C.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
	CapXSAVE2                 = C.KVM_CAP_XSAVE2
	CapXCRS                   = C.KVM_CAP_XCRS
	CapDebugRegs              = C.KVM_CAP_DEBUGREGS
	CapVCPUEvents             = C.KVM_CAP_VCPU_EVENTS
	CapAdjustClock            = C.KVM_CAP_ADJUST_CLOCK
	CapMaxVCPUs               = C.KVM_CAP_MAX_VCPUS
	CapExtCPUID               = C.KVM_CAP_EXT_CPUID
)

// Flags.
const (
	MemLogDirtyPages          = C.KVM_MEM_LOG_DIRTY_PAGES
	MemReadonly               = C.KVM_MEM_READONLY
	PITSpeakerDummy           = C.KVM_PIT_SPEAKER_DUMMY
	DirtyLogManualProtect     = C.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
	DirtyLogInitiallySet      = C.KVM_DIRTY_LOG_INITIALLY_SET
	InternalErrorEmulation    = C.KVM_INTERNAL_ERROR_EMULATION
	SystemEventShutdown       = C.KVM_SYSTEM_EVENT_SHUTDOWN
	SystemEventReset          = C.KVM_SYSTEM_EVENT_RESET
	SystemEventCrash          = C.KVM_SYSTEM_EVENT_CRASH
	MPStateRunnable           = C.KVM_MP_STATE_RUNNABLE
	CPUIDFlagSignificantIndex = C.KVM_CPUID_FLAG_SIGNIFCANT_INDEX
	ClockTSCStable            = C.KVM_CLOCK_TSC_STABLE
	ClockRealtime             = C.KVM_CLOCK_REALTIME
	ClockHostTSC              = C.KVM_CLOCK_HOST_TSC
	IRQChipPICMaster          = C.KVM_IRQCHIP_PIC_MASTER
	IRQChipPICSlave           = C.KVM_IRQCHIP_PIC_SLAVE
	IRQChipIOAPIC             = C.KVM_IRQCHIP_IOAPIC

	// XsaveSize is sizeof(struct kvm_xsave), the legacy KVM_GET_XSAVE size.
	XsaveSize = C.sizeof_struct_kvm_xsave

	MaxCPUIDEntries = C.FERRY_MAX_CPUID
	MaxMSREntries   = C.FERRY_MAX_MSRS

	// RunUnionOffset is where kvm_run's exit union starts.
	RunUnionOffset = C.sizeof_struct_ferry_run_header
	// RunSize is sizeof(struct kvm_run); the vCPU mapping is at least this long.
	RunSize = C.sizeof_struct_kvm_run
)

type (
	UserspaceMemoryRegion C.struct_kvm_userspace_memory_region
	Regs                  C.struct_kvm_regs
	Sregs                 C.struct_kvm_sregs
	Segment               C.struct_kvm_segment
	Dtable                C.struct_kvm_dtable
	FPU                   C.struct_kvm_fpu
	MSREntry              C.struct_kvm_msr_entry
	MSRs                  C.struct_ferry_msrs
	MSRList               C.struct_ferry_msr_list
	CPUIDEntry2           C.struct_kvm_cpuid_entry2
	CPUID2                C.struct_ferry_cpuid2
	PITConfig             C.struct_kvm_pit_config
	IRQLevel              C.struct_kvm_irq_level
	DirtyLog              C.struct_kvm_dirty_log
	ClearDirtyLog         C.struct_kvm_clear_dirty_log
	EnableCap             C.struct_kvm_enable_cap
	LAPICState            C.struct_kvm_lapic_state
	Xsave                 C.struct_kvm_xsave
	XCRs                  C.struct_kvm_xcrs
	DebugRegs             C.struct_kvm_debugregs
	VCPUEvents            C.struct_ferry_vcpu_events
	MSRsHeader            C.struct_kvm_msrs
	MSRListHeader         C.struct_kvm_msr_list
	CPUID2Header          C.struct_kvm_cpuid2
	XCR                   C.struct_kvm_xcr
	PITChannelState       C.struct_kvm_pit_channel_state
	MPState               C.struct_kvm_mp_state
	ClockData             C.struct_kvm_clock_data
	IRQChip               C.struct_kvm_irqchip
	PITState2             C.struct_kvm_pit_state2

	RunHeader      C.struct_ferry_run_header
	RunIO          C.struct_ferry_run_io
	RunMMIO        C.struct_ferry_run_mmio
	RunInternal    C.struct_ferry_run_internal
	RunFailEntry   C.struct_ferry_run_fail_entry
	RunSystemEvent C.struct_ferry_run_system_event
)
