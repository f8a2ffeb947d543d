package vcpu

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGate runs fake vCPU loops (no KVM) through pause, resume and stop.
func TestGate(t *testing.T) {
	g := NewGate()
	var steps [3]atomic.Int64
	var wg sync.WaitGroup
	for i := range steps {
		c := &VCPU{} // no KVM vCPU: kicks are no-ops, loops spin through checkpoints
		g.add(c)
		wg.Go(func() {
			defer g.done(c)
			for g.checkpoint(c) {
				steps[i].Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	var frozen [3]int64
	for i := range steps {
		frozen[i] = steps[i].Load()
	}
	time.Sleep(50 * time.Millisecond)
	for i := range steps {
		if steps[i].Load() != frozen[i] {
			t.Errorf("vCPU %d ran while paused", i)
		}
	}
	if !g.Paused() {
		t.Error("Paused() = false while paused")
	}
	g.Resume()
	time.Sleep(50 * time.Millisecond)
	for i := range steps {
		if steps[i].Load() == frozen[i] {
			t.Errorf("vCPU %d did not run after resume", i)
		}
	}
	g.Stop()
	wg.Wait()
	// Pause after every loop returned must not hang.
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGatePauseDeadline checks that Pause gives up at its context's end
// when a vCPU never reaches its checkpoint.
func TestGatePauseDeadline(t *testing.T) {
	g := NewGate()
	g.add(&VCPU{}) // never calls checkpoint
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Pause(ctx); err == nil {
		t.Fatal("Pause returned nil with a vCPU that never parked")
	}
}
