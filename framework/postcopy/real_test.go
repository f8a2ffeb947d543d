//go:build linux && amd64

package postcopy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/postcopy"
)

const page = postcopy.PageSize

// Page classes of the real test, by p % 8.
const (
	clsFinal    = 0 // (and 1) landed in pre-copy, final: a fault CONTINUEs locally
	clsDirtied  = 2 // landed v1, dirtied before the switch: must come again as v2
	clsZeroHole = 3 // zero run, hole in the memfd: ZEROPAGE locally
	clsZeroOld  = 4 // landed v1, then a zero run: the memfd's old copy must never show
	clsAbsent   = 5 // never sent: requested, some answers late
	clsZeroNet  = 6 // never sent: the source answers the request with a zero run
	clsPushed   = 7 // never sent: pushed in the background (pre-paging)
)

// content fills b with version ver of page p (ver 0 = all zero).
func content(b []byte, p uint64, ver int) {
	if ver == 0 {
		clear(b)
		return
	}
	for i := range b {
		b[i] = byte(int(p)*31 + ver*7 + i%13 + 1)
	}
	binary.LittleEndian.PutUint64(b, p)
}

// final is page p's content at the switch.
func final(p uint64) (ver int) {
	switch p % 8 {
	case 0, 1:
		return 1
	case clsDirtied, clsAbsent, clsPushed:
		return 2
	}
	return 0
}

// marked pages get a byte written by the guest after its first read.
func marked(p uint64) bool { return p%16 == 1 || p%16 == clsZeroHole }

// fakeSource is the network: it answers requests by writing the page
// through the transport's (alias) mapping and reporting it landed, or by
// declaring it zero, some late; it pushes pages in the background; it
// never sends a page twice.
type fakeSource struct {
	t     *testing.T
	svc   *postcopy.Service
	alias []byte
	reqs  chan uint64
	mu    sync.Mutex
	sent  map[uint64]bool
	wg    sync.WaitGroup
}

// request is the Placer's Requester: it only queues.
func (s *fakeSource) request(first, count uint64) error {
	for p := first; p < first+count; p++ {
		select {
		case s.reqs <- p:
		default:
			return errors.New("request queue full")
		}
	}
	return nil
}

// send delivers page p unless it was sent already.
func (s *fakeSource) send(p uint64) {
	s.mu.Lock()
	if s.sent[p] {
		s.mu.Unlock()
		return
	}
	s.sent[p] = true
	s.mu.Unlock()
	var err error
	if ver := final(p); ver == 0 {
		err = s.svc.Zero(p, 1)
	} else {
		content(s.alias[p*page:(p+1)*page], p, ver)
		err = s.svc.Landed(p, 1)
	}
	if err != nil {
		s.t.Errorf("deliver page %d: %v", p, err)
	}
}

// serve answers requests until ctx ends; every third absent or dirtied
// page is answered 3 ms late, on a goroutine of its own.
func (s *fakeSource) serve(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.reqs:
			switch c := p % 8; {
			case c == 0 || c == 1 || c == clsZeroHole || c == clsZeroOld:
				s.t.Errorf("page %d (class %d) was requested: it should resolve locally", p, c)
			case (c == clsAbsent || c == clsDirtied) && p%3 == 0:
				s.wg.Add(1)
				go func() { defer s.wg.Done(); time.Sleep(3 * time.Millisecond); s.send(p) }()
			default:
				s.send(p)
			}
		}
	}
}

// ramPair is a memfd mapped as the guest sees it and as the transport does.
func ramPair(t *testing.T, pages uint64) (fd int, guest, alias []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("postcopy-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(pages*page)); err != nil {
		t.Fatal(err)
	}
	guest, err = unix.Mmap(fd, 0, int(pages*page), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	alias, err = unix.Mmap(fd, 0, int(pages*page), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(guest); unix.Munmap(alias); unix.Close(fd) })
	return fd, guest, alias
}

// precopy plays the pre-switch part: pages landed, zero runs, then the
// final dirty set, written through the alias as the transport would. The
// VMM has touched some pages through the guest mapping, so they have
// page-table entries that Register must drop.
func precopy(t *testing.T, svc *postcopy.Service, guest, alias []byte, pages uint64) {
	for p := uint64(0); p < pages; p++ {
		switch p % 8 {
		case 0, 1, clsDirtied, clsZeroOld:
			content(alias[p*page:(p+1)*page], p, 1)
			must(t, svc.Landed(p, 1))
			sink.Add(uint32(guest[p*page])) // a page-table entry in the guest mapping (no uffd yet)
		}
	}
	for p := uint64(0); p < pages; p++ {
		switch p % 8 {
		case clsZeroHole, clsZeroOld:
			must(t, svc.Zero(p, 1))
		}
	}
	for p := uint64(0); p < pages; p++ {
		if p%8 == clsDirtied {
			must(t, svc.Dirtied(p, 1))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readGuest is a device thread that reads every page in order, checks
// it, and writes a mark into some: it never sees a stale or half-written
// page. It faults pages in with Populate (in a syscall) before it
// compares them, as a VMM's device code must (docs/POSTCOPY.md).
func readGuest(t *testing.T, svc *postcopy.Service, m postcopy.Mapping, guest []byte, order []uint64, done chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(done)
	want := make([]byte, page)
	for _, p := range order {
		content(want, p, final(p))
		// bytes.Equal is assembly Go cannot preempt: fault in from a syscall first.
		if err := svc.Populate(m, uffd.Addr(guest[p*page:]), page, marked(p)); err != nil {
			t.Errorf("populate page %d: %v", p, err)
		}
		if got := guest[p*page : (p+1)*page]; !bytes.Equal(got, want) {
			t.Errorf("guest read page %d: first bytes %x, want %x", p, got[:16], want[:16])
		}
		if marked(p) {
			guest[(p+1)*page-1] = 0xee
		}
	}
}

// kernelGuest is a device thread whose accesses are kernel faults, as
// KVM's are: write(2) from guest RAM into a sink file (copy_from_user).
func kernelGuest(t *testing.T, guest []byte, sink int, order []uint64, done chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(done)
	for _, p := range order {
		if _, err := unix.Pwrite(sink, guest[p*page:(p+1)*page], int64(p*page)); err != nil {
			t.Errorf("pwrite page %d: %v", p, err)
		}
	}
}

// TestRealFaults runs the fault service on real userfaultfd: a memfd
// mapped twice, device threads faulting on the guest mapping (user and
// kernel faults), a fake source supplying pages late or as zero runs.
// Every page ends right, nothing hangs, and the latency figures come out.
func TestRealFaults(t *testing.T) {
	const pages = 4096
	fd, guest, alias := ramPair(t, pages)
	u, err := uffd.Open(uffd.Needed)
	if errors.Is(err, uffd.ErrPermission) || errors.Is(err, uffd.ErrNotSupported) {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	must(t, err)
	defer u.Close()

	src := &fakeSource{t: t, alias: alias, reqs: make(chan uint64, 2*pages), sent: map[uint64]bool{}}
	m := postcopy.Mapping{{Host: uffd.Addr(guest), Size: pages * page, Fd: fd}}
	svc := postcopy.New(pages, &postcopy.Placer{FD: u, Map: m, Requester: src.request})
	src.svc = svc
	precopy(t, svc, guest, alias, pages)
	must(t, postcopy.Register(u, m))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() { loopErr <- svc.Run(ctx, u, m) }()
	netCtx, netStop := context.WithCancel(ctx)
	go src.serve(netCtx)
	go func() { // pre-paging: push the background pages, a few at a time
		for p := uint64(clsPushed); p < pages; p += 8 {
			src.send(p)
			if p%64 == clsPushed {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()

	rng := rand.New(rand.NewPCG(7, 9))
	order := rng.Perm(pages)
	all, kern := make([]uint64, pages), []uint64{}
	for i, p := range order {
		all[i] = uint64(p)
		if p%5 == 0 && !marked(uint64(p)) {
			kern = append(kern, uint64(p))
		}
	}
	sink, err := unix.MemfdCreate("sink", unix.MFD_CLOEXEC)
	must(t, err)
	defer unix.Close(sink)
	start := time.Now()
	d1, d2 := make(chan struct{}), make(chan struct{})
	go readGuest(t, svc, m, guest, all, d1)
	go kernelGuest(t, guest, sink, kern, d2)
	for _, d := range []chan struct{}{d1, d2} {
		select {
		case <-d:
		case <-ctx.Done():
			t.Fatal("a device thread hung on a fault")
		}
	}
	elapsed := time.Since(start)

	// The end of post-copy: the source sends what is left, the service
	// settles, the range is unregistered.
	for p := uint64(0); p < pages; p++ {
		if c := p % 8; c >= clsAbsent {
			src.send(p)
		}
	}
	netStop()
	src.wg.Wait()
	must(t, svc.Settle())
	must(t, postcopy.Unregister(u, m))
	cancel()
	if err := <-loopErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("fault loop: %v", err)
	}

	checkFinal(t, guest, sink, kern, pages)
	st := svc.Stats()
	t.Logf("%d pages touched by 2 device threads in %v: %d faults, %d requested, %d zero local, %d landed local, %d duplicate, %d spurious",
		pages, elapsed.Round(time.Millisecond), st.Faults, st.PagesRequested, st.PagesZeroLocal, st.PagesLandLocal, st.Duplicate, st.Spurious)
	t.Logf("fault latency (read to resolved): p50 %.1f us, p99 %.1f us, max %.1f us", st.FaultP50us, st.FaultP99us, st.FaultMaxus)
	if st.PagesRequested == 0 || st.PagesZeroLocal == 0 || st.PagesLandLocal == 0 || st.FaultP50us <= 0 {
		t.Errorf("stats %+v: every path should have been taken", st)
	}
	if st.Placed != pages {
		t.Errorf("%d pages placed, want %d", st.Placed, pages)
	}
}

// checkFinal compares every page, now read without userfaultfd, and the
// pages the kernel-fault thread copied out, with what they must hold.
func checkFinal(t *testing.T, guest []byte, sink int, kern []uint64, pages uint64) {
	want := make([]byte, page)
	for p := uint64(0); p < pages; p++ {
		content(want, p, final(p))
		if marked(p) {
			want[page-1] = 0xee
		}
		if got := guest[p*page : (p+1)*page]; !bytes.Equal(got, want) {
			t.Errorf("final page %d: first bytes %x last %x, want %x last %x", p, got[:16], got[page-1], want[:16], want[page-1])
		}
	}
	got := make([]byte, page)
	for _, p := range kern {
		content(want, p, final(p))
		if _, err := unix.Pread(sink, got, int64(p*page)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("kernel-fault copy of page %d: %x (%v), want %x", p, got[:16], err, want[:16])
		}
	}
}
