package session

import "unsafe"

// hostAddr is the address of the VMM's mapping b, for hint providers that
// read /proc/PID/pagemap: the shared mapping of guest RAM never moves.
func hostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
