package hint_test

import (
	"context"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// TestBrokerFlood: a plugin that floods the host's end of go-plugin's
// broker with connection offers (ConnInfo messages for ids the host
// never dials; each made go-plugin's host side start a goroutine that
// lived 5 s, and a knock would add a map entry for good) costs the host
// no goroutines: the host drops what a plugin sends on the broker
// stream, and the plugin still answers its calls.
func TestBrokerFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	before := runtime.NumGoroutine()
	p := launch(t, brokerFloodName, nil)
	most := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		most = max(most, runtime.NumGoroutine()-before)
	}
	t.Logf("the host ran up to %d goroutines more than before the plugin started", most)
	if most > 200 {
		t.Errorf("the host ran up to %d goroutines more while the plugin flooded its broker", most)
	}
	if _, err := p.Info(tctx(t)); err != nil {
		t.Errorf("Info while the plugin floods: %v", err)
	}
}

// TestHostConnFlood: a plugin that opens a thousand connections to the
// listener its hint window's Host is served on costs the host a few
// descriptors and goroutines, not one each: the host keeps only the
// connections the protocol needs (the window's one) and closes the rest
// as they come; the window's own connection still works. Before, the
// host's gRPC server took every one and kept it for its handshake's two
// minutes.
func TestHostConnFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	p := launch(t, connFloodName, nil)
	ctx := tctx(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	if err := p.Configure(ctx, nil, hint.VM{}, &balloonVMM{}); err != nil {
		t.Fatal(err)
	}
	mostFDs, mostG := 0, 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		mostFDs, mostG = max(mostFDs, openFDs(t)-fds), max(mostG, runtime.NumGoroutine()-goroutines)
	}
	t.Logf("the host had up to %d descriptors and %d goroutines more while the plugin opened %d connections", mostFDs, mostG, hint.ConnFloodConns)
	if mostFDs > 50 || mostG > 200 {
		t.Errorf("the host had up to %d descriptors and %d goroutines more while the plugin opened %d connections to its Host",
			mostFDs, mostG, hint.ConnFloodConns)
	}
	pages := 0
	err := p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(5 * time.Second)}, func(r []hint.Range) error {
		pages += len(r)
		return nil
	})
	if err != nil || pages != 1 {
		t.Errorf("a balloon hint session over the window's own connection: %v, %d ranges", err, pages)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// countingVMM counts the CMMABits calls that reach the VMM; with s390
// set it answers each with as many values as asked for, else it has no
// CMMA.
type countingVMM struct {
	balloonVMM
	s390  bool
	calls atomic.Int64
}

func (v *countingVMM) CMMABits(_ context.Context, start uint64, count int) (uint64, []byte, error) {
	v.calls.Add(1)
	if !v.s390 {
		return 0, nil, hint.ErrNotSupported
	}
	return start, make([]byte, count), nil
}

// callsInASecond configures the plugin started as name with vmm and
// counts the calls that reach it in a second, once the burst is spent.
func callsInASecond(t *testing.T, name string, vmm *countingVMM) (int64, time.Duration) {
	t.Helper()
	p := launch(t, name, nil)
	if err := p.Configure(tctx(t), nil, hint.VM{}, vmm); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the burst
	calls0, begin := vmm.calls.Load(), time.Now()
	time.Sleep(time.Second)
	return vmm.calls.Load() - calls0, time.Since(begin)
}

// TestHostCMMARepeatLimited: large CMMABits calls (each past the size
// of a scan's step) made from one place over and over, a flood dressed
// as a scan, are held to plugproc.BrokerCallRate: only a scan's forward
// steps give their token back (window.scanned; TestScanStep* show which
// calls count as steps, TestRefundCall the refund itself).
func TestHostCMMARepeatLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	repeats, took := callsInASecond(t, cmmaRepeatName, &countingVMM{s390: true})
	t.Logf("%d CMMABits calls of %d values from frame 0 in %v", repeats, hint.MinRefundedCMMA, took.Round(time.Millisecond))
	if most := int64(plugproc.BrokerCallRate*took.Seconds()) + 300; repeats > most {
		t.Errorf("%d CMMABits calls from one place in %v: want at most %d, the broker's rate", repeats, took, most)
	}
}

// TestHostCallFlood: a plugin that calls the window's Host as fast as it
// can, from many goroutines, gets at most plugproc.BrokerCallRate calls a
// second (after a burst) past the host's gRPC server; each call beyond
// that waits. Before, 16 000 a second got through and the host spent
// about half a core on them.
func TestHostCallFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	calls, took := callsInASecond(t, callFloodName, &countingVMM{})
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	t.Logf("%d calls reached the VMM in %v (%.0f/s); the host used %v of CPU in all, with the plugin's start",
		calls, took.Round(time.Millisecond), float64(calls)/took.Seconds(), cpu.Round(time.Millisecond))
	if calls == 0 {
		t.Fatal("no call reached the VMM")
	}
	// With room for a burst the bucket may refill to if the flood stalls
	// (a loaded machine), and the calls in flight: without the limit,
	// 16 000-32 000 got through.
	if most := int64(plugproc.BrokerCallRate*took.Seconds()) + 300; calls > most {
		t.Errorf("%d calls reached the VMM in %v: want at most %d (plugproc.BrokerCallRate a second, with room)", calls, took, most)
	}
}
