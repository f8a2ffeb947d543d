package pagemap

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

// TestScanMatchesEntries: PAGEMAP_SCAN and the entry decoder agree on
// which pages of a mapping are populated, for shared and private ones.
func TestScanMatchesEntries(t *testing.T) {
	const pages = 3000
	for _, flags := range []int{unix.MAP_SHARED, unix.MAP_PRIVATE} {
		f := newMemfd(t, pages*pageSize)
		m, addr := mmapFile(t, int(f.Fd()), pages*pageSize, flags)
		want := []hint.Range{{First: 0, Count: 1}, {First: 10, Count: 3}, {First: 1000, Count: 1}, {First: 2999, Count: 1}}
		for _, r := range want {
			for p := r.First; p < r.First+r.Count; p++ {
				m[p*pageSize] = 1
			}
		}
		v, err := openVMPages(os.Getpid(), hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer v.close()
		read, err := v.read(context.Background(), nil, addr, hint.Range{Count: pages})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(read, want) {
			t.Fatalf("flags %#x: entries say %v, want %v", flags, read, want)
		}
		scan, err := v.scan.populated(context.Background(), addr, 0, pages)
		if errors.Is(err, errScanUnsupported) {
			t.Skipf("no PAGEMAP_SCAN here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(scan, want) {
			t.Fatalf("flags %#x: PAGEMAP_SCAN says %v, want %v", flags, scan, want)
		}
		// A sub-range, starting inside a populated run.
		scan, err = v.scan.populated(context.Background(), addr, 11, 1000)
		if err != nil || !slices.Equal(scan, []hint.Range{{First: 11, Count: 2}, {First: 1000, Count: 1}}) {
			t.Fatalf("flags %#x: sub-range: %v, %v", flags, scan, err)
		}
	}
}

// TestScanManyRegions: more populated runs than one PAGEMAP_SCAN vector
// holds are all found (the walk resumes at walk_end).
func TestScanManyRegions(t *testing.T) {
	const pages = 3 * 4096 * 2
	f := newMemfd(t, pages*pageSize)
	m, addr := mmapFile(t, int(f.Fd()), pages*pageSize, unix.MAP_SHARED)
	for p := uint64(0); p < pages; p += 2 {
		m[p*pageSize] = 1
	}
	v, err := openVMPages(os.Getpid(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	got, err := v.scan.populated(context.Background(), addr, 0, pages)
	if errors.Is(err, errScanUnsupported) {
		t.Skipf("no PAGEMAP_SCAN here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != pages/2 {
		t.Fatalf("%d runs, want %d", len(got), pages/2)
	}
	for i, r := range got {
		if r != (hint.Range{First: uint64(2 * i), Count: 1}) {
			t.Fatalf("run %d is %v", i, r)
		}
	}
}
