package vcpu

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// fakeLoops starts n fake vCPU loops (no KVM), each locked to its own OS
// thread like the real ones; tids[i] is loop i's thread id.
func fakeLoops(t *testing.T, g *Gate, n int) (cpus []*VCPU, tids []int, wait func()) {
	var wg sync.WaitGroup
	tids = make([]int, n)
	ready := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		c := &VCPU{}
		g.add(c)
		cpus = append(cpus, c)
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids[i] = unix.Gettid()
			ready <- struct{}{}
			defer g.done(c)
			for g.checkpoint(c) {
				time.Sleep(time.Millisecond)
			}
		})
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	return cpus, tids, wg.Wait
}

func TestDoRunsOnVCPUThread(t *testing.T) {
	g := NewGate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cpus, tids, wait := fakeLoops(t, g, 3)
	defer wait()
	defer g.Stop()
	if err := cpus[0].Do(ctx, func(*kvm.VCPU) error { return nil }); err != errNotPaused {
		t.Fatalf("Do on a running vCPU: %v, want %v", err, errNotPaused)
	}
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range cpus {
		for range 3 { // repeated calls, each on the same thread
			var got int
			if err := c.Do(ctx, func(*kvm.VCPU) error { got = unix.Gettid(); return nil }); err != nil {
				t.Fatal(err)
			}
			if got != tids[i] {
				t.Fatalf("vCPU %d: fn ran on thread %d, the loop's is %d", i, got, tids[i])
			}
		}
	}
	// The gate still counts every vCPU as parked after serving requests.
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDoCancelAndStop(t *testing.T) {
	g := NewGate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cpus, _, wait := fakeLoops(t, g, 1)
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// A slow request holds the thread; a second one times out unstarted
	// and must never run.
	release, holding := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- cpus[0].Do(ctx, func(*kvm.VCPU) error { close(holding); <-release; return nil })
	}()
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never ran")
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	ran := false
	if err := cpus[0].Do(short, func(*kvm.VCPU) error { ran = true; return nil }); err != context.DeadlineExceeded {
		t.Fatalf("Do with an expired context: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := cpus[0].Do(ctx, func(*kvm.VCPU) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("a withdrawn request ran")
	}
	g.Stop()
	wait()
	if err := cpus[0].Do(ctx, func(*kvm.VCPU) error { return nil }); err != errVCPUExited {
		t.Fatalf("Do after stop: %v, want %v", err, errVCPUExited)
	}
}
