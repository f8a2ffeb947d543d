//go:build linux && amd64

package postcopy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/postcopy"
)

// TestPlacedRefault: the VMM drops placed pages' page-table entries
// (MADV_DONTNEED) and punches one out of the memfd; the next accesses
// fault on placed pages and must map the memfd's page again or a zero
// page, not wake the thread into the same fault forever.
func TestPlacedRefault(t *testing.T) {
	const pages = 4
	fd, guest, alias := ramPair(t, pages)
	u, err := uffd.Open(uffd.Needed)
	if errors.Is(err, uffd.ErrPermission) || errors.Is(err, uffd.ErrNotSupported) {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	must(t, err)
	defer u.Close()
	m := postcopy.Mapping{{Host: uffd.Addr(guest), Size: pages * page, Fd: fd}}
	svc := postcopy.New(pages, &postcopy.Placer{FD: u, Map: m, Requester: func(uint64, uint64) error { return nil }})
	for p := uint64(0); p < pages; p++ {
		content(alias[p*page:(p+1)*page], p, 1)
	}
	must(t, svc.Landed(0, pages))
	must(t, postcopy.Register(u, m))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() { loopErr <- svc.Run(ctx, u, m) }()

	read := func() [pages]byte {
		var got [pages]byte
		done := make(chan struct{})
		go func() {
			defer close(done)
			for p := range pages {
				must(t, uffd.Populate(uffd.Addr(guest[p*page:]), page, false))
				got[p] = guest[p*page+8]
			}
		}()
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("a fault on a placed page never ended")
		}
		return got
	}
	first := read()
	must(t, unix.Madvise(guest, unix.MADV_DONTNEED))
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 2*page, page))
	second := read()
	cancel()
	if err := <-loopErr; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for p := range pages {
		want := first[p]
		if p == 2 {
			want = 0
		}
		if second[p] != want {
			t.Errorf("page %d after refault: %#x, want %#x", p, second[p], want)
		}
	}
	if st := svc.Stats(); st.Spurious != pages {
		t.Errorf("%d faults on placed pages, want %d", st.Spurious, pages)
	}
}

// Available answers at once: nil as root here, or the permission error.
func TestAvailable(t *testing.T) {
	start := time.Now()
	err := postcopy.Available()
	if err != nil && !errors.Is(err, uffd.ErrPermission) && !errors.Is(err, uffd.ErrNotSupported) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Available took %v", d)
	}
	t.Logf("Available: %v", err)
}
