//go:build linux && amd64

package postcopy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
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
	l := startLanded(t, pages)
	fd, guest := l.fd, l.guest
	ctx := l.ctx

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
	l.stop(t)
	for p := range pages {
		want := first[p]
		if p == 2 {
			want = 0
		}
		if second[p] != want {
			t.Errorf("page %d after refault: %#x, want %#x", p, second[p], want)
		}
	}
	if st := l.svc.Stats(); st.Spurious != pages {
		t.Errorf("%d faults on placed pages, want %d", st.Spurious, pages)
	}
}

// TestLandedPunchedRefault: a page that landed but was never mapped is
// punched out of the memfd by the VMM (the guest inflated the balloon
// over it, or reported it free, during post-copy). Its first fault must
// map a zero page, as the kernel would without userfaultfd: CONTINUE
// finds no page there, and a fault loop that gave up on that would break
// post-copy, which loses the VM.
func TestLandedPunchedRefault(t *testing.T) {
	l := startLanded(t, 4)
	must(t, unix.Fallocate(l.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 2*page, page))
	done := make(chan error, 1)
	go func() {
		err := uffd.Populate(uffd.Addr(l.guest[page:]), 3*page, false)
		if err == nil && (l.guest[2*page+8] != 0 || l.guest[3*page+8] == 0) {
			err = errors.New("the punched page is not zero, or its neighbour lost its data")
		}
		done <- err
	}()
	select {
	case err := <-done:
		must(t, err)
	case err := <-l.loopErr:
		t.Fatalf("the fault loop ended on a punched landed page: %v", err)
	case <-l.ctx.Done():
		t.Fatal("a fault on a punched landed page never ended")
	}
	l.stop(t)
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

// TestPopulateAfterSettle: Settle makes every page Placed while the range
// is still registered, and a landed page is not mapped until its first
// fault. Populate between Settle and Unregister must still fault it in
// (inside the madvise, where the thread holds no P): a device thread that
// trusted the Placed state would take that fault in user mode, in code
// Go cannot preempt, and with GOMAXPROCS=1 (or during a garbage
// collection) the fault loop could never serve it. Found as a hang of
// BenchmarkPostcopyFaultsTCPPlugin at GOMAXPROCS=1 (3 in 48 runs): the
// reader blocked in handle_userfault, the engine waiting for a P to
// unregister the second region.
func TestPopulateAfterSettle(t *testing.T) {
	const pages = 4
	l := startLanded(t, pages)
	svc, m, guest := l.svc, l.m, l.guest
	must(t, svc.Settle())
	for p := uint64(0); p < pages; p++ {
		addr := uffd.Addr(guest[p*page:])
		must(t, svc.Populate(m, addr, page, false))
		if !present(t, addr) {
			t.Errorf("page %d: not mapped after Populate between Settle and Unregister (a user-mode access would fault)", p)
		}
	}
	must(t, postcopy.Unregister(l.u, m))
	l.stop(t)
}

// present reads this process's page table entry for addr from
// /proc/self/pagemap (bit 63: present).
func present(t *testing.T, addr uintptr) bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	must(t, err)
	defer f.Close()
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(addr/page)*8); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(e[:])&(1<<63) != 0
}

// landed is a registered guest of pages pages whose data all landed in
// the memfd, with its service's fault loop running (startLanded).
type landed struct {
	fd      int
	guest   []byte
	u       *uffd.FD
	m       postcopy.Mapping
	svc     *postcopy.Service
	ctx     context.Context
	cancel  context.CancelFunc
	loopErr chan error
}

func startLanded(t *testing.T, pages uint64) *landed {
	t.Helper()
	fd, guest, alias := ramPair(t, pages)
	u, err := uffd.Open(uffd.Needed)
	if errors.Is(err, uffd.ErrPermission) || errors.Is(err, uffd.ErrNotSupported) {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	must(t, err)
	t.Cleanup(func() { u.Close() })
	l := &landed{fd: fd, guest: guest, u: u, loopErr: make(chan error, 1)}
	l.m = postcopy.Mapping{{Host: uffd.Addr(guest), Size: pages * page, Fd: fd}}
	l.svc = postcopy.New(pages, &postcopy.Placer{FD: u, Map: l.m, Requester: func(uint64, uint64) error { return nil }})
	for p := uint64(0); p < pages; p++ {
		content(alias[p*page:(p+1)*page], p, 1)
	}
	must(t, l.svc.Landed(0, pages))
	must(t, postcopy.Register(u, l.m))
	l.ctx, l.cancel = context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(l.cancel)
	go func() { l.loopErr <- l.svc.Run(l.ctx, u, l.m) }()
	return l
}

// stop ends the fault loop, which must end with the cancel alone.
func (l *landed) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	if err := <-l.loopErr; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
