package e2e

import (
	"math/bits"
	"regexp"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm"
)

// TestDirtyLogRearms: every sync re-protects what it reported, so a page
// is reported again only if the guest wrote it again. The guest rewrites
// a 64 MiB set at 16 MiB/s, so half a second between syncs covers about
// 8 MiB of it; a sync that left its pages unprotected (manual protection
// without KVM_CLEAR_DIRTY_LOG) would report the whole set, and one that
// re-protected the wrong pages would lose writes (the migration tests'
// page check catches that; here the counts must stay bounded and never
// drop to zero).
func TestDirtyLogRearms(t *testing.T) {
	needKVM(t, "TestDirtyLogRearms (KVM dirty log re-protection)")
	// No balloon: free page reporting would punch the guest's free
	// memory out of the memfd, and those pages count as written.
	vm, serial, _ := runGuest(t, vmm.Config{Memory: 256 << 20, Cmdline: "workload=dirty:64@16", NoBalloon: true})
	serial.wait(t, regexp.MustCompile(`^tick`), 60*time.Second)

	if err := vm.EnableDirtyLog(); err != nil {
		t.Fatal(err)
	}
	dirty := make([]uint64, vm.DirtyWords())
	if err := vm.SyncDirtyLog(dirty); err != nil {
		t.Fatal(err)
	}
	const set = 64 << 20 / 4096
	for i := range 6 {
		clear(dirty)
		time.Sleep(500 * time.Millisecond)
		if err := vm.SyncDirtyLog(dirty); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, w := range dirty {
			n += bits.OnesCount64(w)
		}
		t.Logf("sync %d: %d pages written in 500 ms", i+1, n)
		if n == 0 {
			t.Fatalf("sync %d reported nothing while the guest writes 16 MiB/s", i+1)
		}
		if n > set*3/4 {
			t.Fatalf("sync %d reported %d pages of the guest's %d-page set in 500 ms at 16 MiB/s: pages reported before were not re-protected", i+1, n, set)
		}
	}
	if err := vm.DisableDirtyLog(); err != nil {
		t.Fatal(err)
	}
}
