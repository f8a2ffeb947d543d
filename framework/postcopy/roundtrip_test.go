//go:build linux && amd64

package postcopy_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/postcopy"
)

// TestRealRoundTrip measures a fault's round trip through the whole
// service as the faulting thread sees it, for the three ways a fault is
// served: a landed page (CONTINUE), a zero-known page (ZEROPAGE), and an
// absent page requested from an in-process source that answers at once
// (request, alias write, landed, CONTINUE). The figures are in
// docs/POSTCOPY.md.
func TestRealRoundTrip(t *testing.T) {
	const n = 2000
	// The timed thread faults in user mode (plain loads, preemptible Go
	// code, no Populate) and keeps its P while it waits: leave one spare.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 1))
	fd, guest, alias := ramPair(t, 3*n)
	u, err := uffd.Open(uffd.Needed)
	if errors.Is(err, uffd.ErrPermission) || errors.Is(err, uffd.ErrNotSupported) {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	must(t, err)
	defer u.Close()
	reqs := make(chan uint64, n)
	m := postcopy.Mapping{{Host: uffd.Addr(guest), Size: 3 * n * page, Fd: fd}}
	svc := postcopy.New(3*n, &postcopy.Placer{FD: u, Map: m, Requester: func(first, count uint64) error {
		for p := first; p < first+count; p++ {
			reqs <- p
		}
		return nil
	}})
	for p := uint64(0); p < n; p++ {
		content(alias[p*page:(p+1)*page], p, 1)
	}
	must(t, svc.Landed(0, n))
	must(t, svc.Zero(n, n))
	must(t, postcopy.Register(u, m))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() { loopErr <- svc.Run(ctx, u, m) }()
	go func() { // the source: answers each request at once
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-reqs:
				content(alias[p*page:(p+1)*page], p, 1)
				if err := svc.Landed(p, 1); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	for i, path := range []string{"landed: CONTINUE", "zero-known: ZEROPAGE", "absent: request+CONTINUE"} {
		lat := touchTimed(ctx, t, guest, uint64(i*n), n)
		slices.Sort(lat)
		t.Logf("%-26s round trip over %d faults: p50 %.1f us, p99 %.1f us, max %.1f us", path, n,
			us(lat[n/2]), us(lat[n*99/100]), us(lat[n-1]))
	}
	cancel()
	if err := <-loopErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("fault loop: %v", err)
	}
	st := svc.Stats()
	t.Logf("service: p50 %.1f us, p99 %.1f us (read to resolved); %d requested, %d zero local, %d landed local",
		st.FaultP50us, st.FaultP99us, st.PagesRequested, st.PagesZeroLocal, st.PagesLandLocal)
	if st.PagesRequested != n || st.PagesZeroLocal != n || st.PagesLandLocal != n {
		t.Errorf("stats %+v", st)
	}
}

// touchTimed reads one byte of each page from first on a locked thread,
// timing each access.
func touchTimed(ctx context.Context, t *testing.T, guest []byte, first, n uint64) []time.Duration {
	lat := make([]time.Duration, n)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		var sum byte
		for i := range n {
			t0 := time.Now()
			sum += guest[(first+i)*page+8]
			lat[i] = time.Since(t0)
		}
		sink.Store(uint32(sum))
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the faulting thread hung")
	}
	return lat
}

// sink keeps the compiler from dropping reads of guest RAM.
var sink atomic.Uint32

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
