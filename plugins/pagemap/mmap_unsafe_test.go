//go:build linux

package pagemap

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmapFile maps size bytes of fd at offset 0 with flags (MAP_SHARED or
// MAP_PRIVATE) and returns the mapping and its address.
func mmapFile(t testing.TB, fd int, size int, flags int) ([]byte, uint64) {
	t.Helper()
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	// The test needs the address the VMM would report as HostAddr.
	return b, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
