package hinttest

import "unsafe"

// hostAddr is where m starts in this process: Region.HostAddr, for
// providers that read /proc/PID/pagemap.
func hostAddr(m []byte) uint64 {
	// The address of the mapping's first byte, as a number for the VM
	// description; nothing is dereferenced through it.
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m))))
}
