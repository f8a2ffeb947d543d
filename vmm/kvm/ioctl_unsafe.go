package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues an ioctl whose argument is a plain integer.
func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// ioctlPtr issues an ioctl whose argument is a pointer to a KVM structure.
// The kernel reads and/or writes *arg; it keeps no reference after return.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (uintptr, error) {
	// The pointer is converted inside the syscall expression, so the Go
	// object stays alive and unmoved for the duration of the call.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// setDirtyBitmap points a kvm_dirty_log at a Go bitmap.
func setDirtyBitmap(d *DirtyLog, bitmap []uint64) {
	// The kernel writes whole 64-bit words; a []uint64 is the same bytes.
	d.Bitmap = (*byte)(unsafe.Pointer(&bitmap[0]))
}

// setClearBitmap points a kvm_clear_dirty_log at a Go bitmap.
func setClearBitmap(c *ClearDirtyLog, bitmap []uint64) {
	// The kernel reads whole 64-bit words; a []uint64 is the same bytes.
	c.Dirty_bitmap = (*byte)(unsafe.Pointer(&bitmap[0]))
}

// header views the start of kvm_run.
func (c *VCPU) header() *RunHeader {
	// kvm_run is page-aligned and at least RunSize bytes (checked at creation).
	return (*RunHeader)(unsafe.Pointer(&c.run[0]))
}

func (c *VCPU) setImmediateExit(v uint8) {
	// Any thread may store this byte; KVM reads it on entry to KVM_RUN.
	(*RunHeader)(unsafe.Pointer(&c.run[0])).Immediate_exit = v
}

// exitUnion returns a pointer to kvm_run's exit union.
func (c *VCPU) exitUnion() unsafe.Pointer {
	// The union starts RunUnionOffset bytes in and is 256 bytes long.
	return unsafe.Pointer(&c.run[RunUnionOffset])
}

func (c *VCPU) runIO() *RunIO               { return (*RunIO)(c.exitUnion()) }
func (c *VCPU) runMMIO() *RunMMIO           { return (*RunMMIO)(c.exitUnion()) }
func (c *VCPU) runInternal() *RunInternal   { return (*RunInternal)(c.exitUnion()) }
func (c *VCPU) runFailEntry() *RunFailEntry { return (*RunFailEntry)(c.exitUnion()) }
func (c *VCPU) runSystemEvent() *RunSystemEvent {
	return (*RunSystemEvent)(c.exitUnion())
}

// ioctlBytes issues an ioctl whose argument is a variable-size structure
// held in b (KVM_GET_XSAVE2 and KVM_SET_XSAVE beyond 4 KiB).
func ioctlBytes(fd int, req uintptr, b []byte) (uintptr, error) {
	// The kernel reads and/or writes at most len(b) bytes at the slice's
	// start (callers size b from KVM_CAP_XSAVE2); the slice stays alive
	// for the call.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}
