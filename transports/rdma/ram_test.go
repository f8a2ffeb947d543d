package rdma

import (
	"os"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPopulateWarm checks that populate records the whole chunks it
// populated, skips none it did not, and that punching pages out of a
// chunk makes it cold again.
func TestPopulateWarm(t *testing.T) {
	const pages = 3*warmChunk + 100 // a partial chunk at the end
	fd, err := unix.MemfdCreate("warm", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "warm")
	defer f.Close()
	if err := f.Truncate(pages * pageSize); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	r := &region{pages: pages, mem: mem, file: f, warm: make([]atomic.Uint64, 1)}
	warm := func() (w [4]bool) {
		for c := range w {
			w[c] = r.isWarm(uint64(c))
		}
		return w
	}
	// From the middle of chunk 0 to the middle of chunk 2: only chunk 1 is whole.
	r.populate(warmChunk/2, 2*warmChunk, true)
	if w := warm(); w != [4]bool{false, true, false, false} {
		t.Fatalf("warm after a first populate: %v", w)
	}
	// All of it: chunks 0 and 2 too, never the partial last one.
	r.populate(0, pages, true)
	if w := warm(); w != [4]bool{true, true, true, false} {
		t.Fatalf("warm after populating everything: %v", w)
	}
	// Punching one page out of chunk 1 makes it cold (and the page zero);
	// populating again makes the chunk warm.
	mem[(warmChunk+7)*pageSize] = 1
	r.zero(warmChunk+7, 1, true)
	if mem[(warmChunk+7)*pageSize] != 0 {
		t.Fatal("the punched page is not zero")
	}
	if w := warm(); w != [4]bool{true, false, true, false} {
		t.Fatalf("warm after a punch: %v", w)
	}
	r.populate(0, pages, true)
	if w := warm(); w != [4]bool{true, true, true, false} {
		t.Fatalf("warm after populating again: %v", w)
	}
}
