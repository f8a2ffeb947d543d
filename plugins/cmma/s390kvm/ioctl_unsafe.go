//go:build linux && s390x

package s390kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel copies these structures by size; catch a layout mistake at
// compile time.
var _ [32]byte = [unsafe.Sizeof(cmmaLog{})]byte{}
var _ [24]byte = [unsafe.Sizeof(deviceAttr{})]byte{}

// ioctl issues a VM ioctl whose argument is a pointer to a KVM structure.
func ioctl[T any](fd int, req uintptr, arg *T) error {
	// The pointer is converted inside the syscall expression, so the Go
	// object stays alive and unmoved for the duration of the call.
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

// getCMMA runs KVM_S390_GET_CMMA_BITS with l.values pointing at buf.
func getCMMA(fd int, l *cmmaLog, buf []byte) error {
	l.values = unsafe.SliceData(buf) // nil for an empty buf: KVM then writes nothing
	return ioctl(fd, kvmS390GetCMMABits, l)
}

// setCMMA runs KVM_S390_SET_CMMA_BITS with l.values pointing at values.
func setCMMA(fd int, l *cmmaLog, values []byte) error {
	l.values = unsafe.SliceData(values)
	return ioctl(fd, kvmS390SetCMMABits, l)
}

func setDeviceAttr(fd int, a *deviceAttr) error { return ioctl(fd, kvmSetDeviceAttr, a) }

// getMigrationStatus reads KVM_S390_VM_MIGRATION_STATUS into *mode.
func getMigrationStatus(fd int, mode *uint64) error {
	return ioctl(fd, kvmGetDeviceAttr, &deviceAttr{group: kvmS390VMMigration, attr: migrationStatus, addr: mode})
}
