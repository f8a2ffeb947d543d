package vmm

import "unsafe"

// hostAddr is the userspace address KVM maps a memory slot from.
func hostAddr(b []byte) uint64 {
	// KVM takes the address of the shared mapping, which never moves.
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
