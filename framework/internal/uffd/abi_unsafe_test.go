//go:build linux && amd64

package uffd

import (
	"testing"
	"unsafe"
)

// ioc is the kernel's _IOC(dir, type, nr, size) on x86-64.
func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

const (
	iocWrite = 1
	iocRead  = 2
)

// TestABI checks the generated structures and ioctl numbers against the
// sizes and layout in <linux/userfaultfd.h>, so a bad regeneration fails.
func TestABI(t *testing.T) {
	sizes := []struct {
		name      string
		got, want uintptr
	}{
		{"uffdio_api", unsafe.Sizeof(apiArgs{}), 24},
		{"uffdio_range", unsafe.Sizeof(rangeArgs{}), 16},
		{"uffdio_register", unsafe.Sizeof(registerArgs{}), 32},
		{"uffdio_copy", unsafe.Sizeof(copyArgs{}), 40},
		{"uffdio_zeropage", unsafe.Sizeof(zeropageArgs{}), 32},
		{"uffdio_continue", unsafe.Sizeof(continueArgs{}), 32},
		{"uffd_msg", unsafe.Sizeof(rawMsg{}), 32},
		{"sizeof uffd_msg", sizeofMsg, 32},
		{"pagefault view", unsafe.Sizeof(pagefaultMsg{}), sizeofMsg},
		{"pagefault.flags offset", unsafe.Offsetof(pagefaultMsg{}.Flags), 8},
		{"pagefault.address offset", unsafe.Offsetof(pagefaultMsg{}.Address), 16},
		{"pagefault.ptid offset", unsafe.Offsetof(pagefaultMsg{}.Ptid), 24},
		{"copy.copy offset", unsafe.Offsetof(copyArgs{}.Copy), 32},
		{"continue.mapped offset", unsafe.Offsetof(continueArgs{}.Mapped), 24},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("%s: %d, want %d", s.name, s.got, s.want)
		}
	}
	rw := uintptr(iocRead | iocWrite)
	ioctls := []struct {
		name      string
		got, want uintptr
	}{
		{"USERFAULTFD_IOC_NEW", ioctlNew, ioc(0, 0xaa, 0, 0)},
		{"UFFDIO_API", ioctlAPI, ioc(rw, 0xaa, 0x3f, 24)},
		{"UFFDIO_REGISTER", ioctlRegister, ioc(rw, 0xaa, 0x00, 32)},
		{"UFFDIO_UNREGISTER", ioctlUnregister, ioc(iocRead, 0xaa, 0x01, 16)},
		{"UFFDIO_WAKE", ioctlWake, ioc(iocRead, 0xaa, 0x02, 16)},
		{"UFFDIO_COPY", ioctlCopy, ioc(rw, 0xaa, 0x03, 40)},
		{"UFFDIO_ZEROPAGE", ioctlZeropage, ioc(rw, 0xaa, 0x04, 32)},
		{"UFFDIO_CONTINUE", ioctlContinue, ioc(rw, 0xaa, 0x07, 32)},
	}
	for _, c := range ioctls {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	consts := []struct {
		name      string
		got, want uint64
	}{
		{"UFFD_API", APIVersion, 0xaa},
		{"UFFD_FEATURE_MISSING_SHMEM", FeatureMissingShmem, 1 << 5},
		{"UFFD_FEATURE_MINOR_SHMEM", FeatureMinorShmem, 1 << 10},
		{"UFFDIO_REGISTER_MODE_MISSING", ModeMissing, 1},
		{"UFFDIO_REGISTER_MODE_MINOR", ModeMinor, 4},
		{"UFFD_EVENT_PAGEFAULT", EventPagefault, 0x12},
		{"UFFD_PAGEFAULT_FLAG_MINOR", FlagMinor, 4},
		{"UFFD_USER_MODE_ONLY", userModeOnly, 1},
	}
	for _, c := range consts {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
