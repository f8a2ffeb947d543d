package plugintest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Memfd returns a memfd of size bytes (never written: it reads as zero
// and holds no pages), closed when the test ends.
func Memfd(t testing.TB, name string, size int64) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatalf("size memfd: %v", err)
	}
	return f
}

// Map maps size bytes of f from offset off, shared and writable, as a
// VMM maps guest RAM; the mapping ends when the test ends.
func Map(t testing.TB, f *os.File, off, size int64) []byte {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("map guest RAM: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return m
}
