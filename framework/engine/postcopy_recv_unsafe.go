package engine

import "unsafe"

// sliceAddr is the address of b's first byte: b is part of a guest
// mapping made with mmap, outside the Go heap, so the address is stable.
// b must not be empty.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
