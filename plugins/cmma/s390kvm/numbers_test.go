package s390kvm

import "testing"

// ioc is the generic Linux ioctl encoding (include/uapi/asm-generic/ioctl.h),
// which s390 uses: dir 31..30, size 29..16, type 15..8, nr 7..0.
func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

const iocWrite, iocRead = 1, 2

func TestIoctlNumbers(t *testing.T) {
	const kvmio = 0xae
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_S390_GET_CMMA_BITS", kvmS390GetCMMABits, ioc(iocRead|iocWrite, kvmio, 0xb8, 32)},
		{"KVM_S390_SET_CMMA_BITS", kvmS390SetCMMABits, ioc(iocWrite, kvmio, 0xb9, 32)},
		{"KVM_SET_DEVICE_ATTR", kvmSetDeviceAttr, ioc(iocWrite, kvmio, 0xe1, 24)},
		{"KVM_GET_DEVICE_ATTR", kvmGetDeviceAttr, ioc(iocWrite, kvmio, 0xe2, 24)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
