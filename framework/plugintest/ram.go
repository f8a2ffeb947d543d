package plugintest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Memfd returns a memfd of size bytes (never written: it reads as zero
// and holds no pages), closed when the test ends.
func Memfd(t testing.TB, name string, size int64) *os.File {
	t.Helper()
	f, err := newMemfd(name)
	if err != nil {
		t.Fatal(err)
	}
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

// Region is one region of the conformance suites' guest RAM (SuiteRAM):
// GPA and Size in bytes, backed by memfd File from Offset.
type Region struct {
	GPA, Size uint64
	File      int
	Offset    uint64
}

// SuiteRAM is the guest RAM layout both conformance suites (hinttest,
// transporttest) use: 8 MiB at GPA 0 in RAM file 0, and 4 MiB at GPA
// 4 GiB in RAM file 1 from offset 1 MiB, so a plugin meets two files,
// a gap in guest physical addresses and a region that does not start its
// file.
var SuiteRAM = []Region{
	{GPA: 0, Size: 8 << 20, File: 0, Offset: 0},
	{GPA: 4 << 30, Size: 4 << 20, File: 1, Offset: 1 << 20},
}

// suiteFileSizes are the sizes of SuiteRAM's files.
var suiteFileSizes = []int64{8 << 20, 5 << 20}

// SuiteMemfds returns SuiteRAM's files, never written, named prefix-0,
// prefix-1; they are closed when the test ends.
func SuiteMemfds(t testing.TB, prefix string) []*os.File {
	t.Helper()
	var files []*os.File
	for i, size := range suiteFileSizes {
		files = append(files, Memfd(t, fmt.Sprintf("%s-%d", prefix, i), size))
	}
	return files
}

// MemfdWith is Memfd with content written at offset at.
func MemfdWith(t testing.TB, name string, size int64, content []byte, at int64) *os.File {
	t.Helper()
	f := Memfd(t, name, size)
	if _, err := f.WriteAt(content, at); err != nil {
		t.Fatalf("write memfd: %v", err)
	}
	return f
}

// SuiteLayout is SuiteRAM in a plugin kind's region type, made by conv.
func SuiteLayout[R any](conv func(Region) R) []R {
	out := make([]R, len(SuiteRAM))
	for i, g := range SuiteRAM {
		out[i] = conv(g)
	}
	return out
}

// Dup returns a second descriptor of f (close-on-exec), closed when the
// test ends: the same open file under another number, as a VMM may hold.
func Dup(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := os.NewFile(uintptr(fd), f.Name())
	t.Cleanup(func() { d.Close() })
	return d
}

// ReadOnly opens f again, read-only (through /proc/self/fd), as a
// sending VMM hands guest RAM to its plugins (engine.RAMFiles); the file
// is closed when the test ends.
func ReadOnly(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s read-only: %v", f.Name(), err)
	}
	r := os.NewFile(uintptr(fd), f.Name()+" (read-only)")
	t.Cleanup(func() { r.Close() })
	return r
}
