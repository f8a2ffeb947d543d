package vcpu_test

import "unsafe"

func hostAddr(b []byte) uint64 {
	// The test's anonymous mapping never moves.
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}
