//go:build linux

package tcp

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRegionReadWrite: write puts pages into the file at the region's
// offset and read gets them back, both through the file (pwrite, pread),
// visible in the mapping; a region whose file cannot do that (here: a
// read-only descriptor for write, a directory for read) falls back to the
// mapping with the same result.
func TestRegionReadWrite(t *testing.T) {
	const pages, off = 8, 2 * pageSize // the region starts 2 pages into its file
	fd, err := unix.MemfdCreate("ram-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "ram-test")
	defer f.Close()
	if err := f.Truncate(off + pages*pageSize); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, off, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	ro, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, c := range []struct {
		name      string
		file      *os.File
		fallsBack bool
	}{{"file", f, false}, {"read-only", ro, true}, {"directory", dir, true}} {
		r := &region{first: 100, pages: pages, mem: mem, file: c.file, off: off}
		clear(mem)
		data := bytes.Repeat([]byte(c.name[:1]), 3*pageSize)
		r.write(data, 103)
		if !bytes.Equal(mem[3*pageSize:6*pageSize], data) || !bytes.Equal(mem[:3*pageSize], make([]byte, 3*pageSize)) {
			t.Errorf("%s: write of pages 103-105 did not land there", c.name)
		}
		got := make([]byte, 3*pageSize)
		if c.file == ro {
			r.file = dir // pread from a directory fails: the read falls back too
		}
		r.read(got, 103)
		if !bytes.Equal(got, data) {
			t.Errorf("%s: read of pages 103-105 returned other bytes", c.name)
		}
		if r.noWrite.Load() != c.fallsBack {
			t.Errorf("%s: write fell back %v, want %v", c.name, r.noWrite.Load(), c.fallsBack)
		}
	}
}
