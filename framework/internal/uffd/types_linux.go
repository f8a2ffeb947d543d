// Copyright and licensing: see the repository's LICENSE.

//go:build ignore

// This file is the input of `go tool cgo -godefs`; it is not compiled.
// Regenerate ztypes_linux_amd64.go with `make godefs` (see the Makefile).

package uffd

/*
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

// The page-fault member of uffd_msg's union, named so godefs can emit it:
// uffd_msg is packed and its union would come out as an opaque byte array.
struct ferry_uffd_pagefault {
	__u8  event;
	__u8  reserved1;
	__u16 reserved2;
	__u32 reserved3;
	__u64 flags;
	__u64 address;
	__u32 ptid;
	__u32 pad;
};
*/
import "C"

// Ioctls on a userfaultfd and on /dev/userfaultfd.
const (
	ioctlNew        = C.USERFAULTFD_IOC_NEW
	ioctlAPI        = C.UFFDIO_API
	ioctlRegister   = C.UFFDIO_REGISTER
	ioctlUnregister = C.UFFDIO_UNREGISTER
	ioctlWake       = C.UFFDIO_WAKE
	ioctlCopy       = C.UFFDIO_COPY
	ioctlZeropage   = C.UFFDIO_ZEROPAGE
	ioctlContinue   = C.UFFDIO_CONTINUE
)

// Bits of the ioctls mask UFFDIO_API and UFFDIO_REGISTER return.
const (
	ioctlBitRegister   = C._UFFDIO_REGISTER
	ioctlBitUnregister = C._UFFDIO_UNREGISTER
	ioctlBitWake       = C._UFFDIO_WAKE
	ioctlBitCopy       = C._UFFDIO_COPY
	ioctlBitZeropage   = C._UFFDIO_ZEROPAGE
	ioctlBitContinue   = C._UFFDIO_CONTINUE
	ioctlBitAPI        = C._UFFDIO_API
)

// APIVersion is the only userfaultfd API number (UFFD_API).
const APIVersion = C.UFFD_API

// userModeOnly is UFFD_USER_MODE_ONLY: Ferry never sets it, because KVM's
// faults on guest RAM are kernel faults that such a descriptor misses.
const userModeOnly = C.UFFD_USER_MODE_ONLY

// Features negotiated with UFFDIO_API.
const (
	FeatureMissingShmem = C.UFFD_FEATURE_MISSING_SHMEM
	FeatureMinorShmem   = C.UFFD_FEATURE_MINOR_SHMEM
	FeatureThreadID     = C.UFFD_FEATURE_THREAD_ID
	FeatureEventRemove  = C.UFFD_FEATURE_EVENT_REMOVE
)

// Registration modes.
const (
	ModeMissing = C.UFFDIO_REGISTER_MODE_MISSING
	ModeWP      = C.UFFDIO_REGISTER_MODE_WP
	ModeMinor   = C.UFFDIO_REGISTER_MODE_MINOR
)

// Mode bits of the resolving ioctls.
const (
	copyModeDontWake     = C.UFFDIO_COPY_MODE_DONTWAKE
	zeropageModeDontWake = C.UFFDIO_ZEROPAGE_MODE_DONTWAKE
	continueModeDontWake = C.UFFDIO_CONTINUE_MODE_DONTWAKE
)

// Events and page-fault flags in a uffd_msg.
const (
	EventPagefault = C.UFFD_EVENT_PAGEFAULT
	EventFork      = C.UFFD_EVENT_FORK
	EventRemap     = C.UFFD_EVENT_REMAP
	EventRemove    = C.UFFD_EVENT_REMOVE
	EventUnmap     = C.UFFD_EVENT_UNMAP

	FlagWrite = C.UFFD_PAGEFAULT_FLAG_WRITE
	FlagWP    = C.UFFD_PAGEFAULT_FLAG_WP
	FlagMinor = C.UFFD_PAGEFAULT_FLAG_MINOR
)

// Structures.
type (
	apiArgs      C.struct_uffdio_api
	rangeArgs    C.struct_uffdio_range
	registerArgs C.struct_uffdio_register
	copyArgs     C.struct_uffdio_copy
	zeropageArgs C.struct_uffdio_zeropage
	continueArgs C.struct_uffdio_continue
	rawMsg       C.struct_uffd_msg
	pagefaultMsg C.struct_ferry_uffd_pagefault
)

// Sizes the size test compares against the kernel's ABI.
const (
	sizeofMsg       = C.sizeof_struct_uffd_msg
	sizeofPagefault = C.sizeof_struct_ferry_uffd_pagefault
)
