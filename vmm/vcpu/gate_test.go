package vcpu

import (
	"context"
	"errors"
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
	for i := range steps {
		if !ranPast(&steps[i], frozen[i]) {
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

// ranPast waits until a loop's steps pass frozen, for up to 10 s (a
// loaded machine may run it late), and says whether they did.
func ranPast(steps *atomic.Int64, frozen int64) bool {
	for deadline := time.Now().Add(10 * time.Second); steps.Load() == frozen && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return steps.Load() != frozen
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

// fakeLoop starts a run loop without KVM: it counts its trips through
// the checkpoint until the gate stops it.
func fakeLoop(g *Gate, wg *sync.WaitGroup, steps *atomic.Int64) {
	c := &VCPU{}
	g.add(c)
	wg.Go(func() {
		defer g.done(c)
		for g.checkpoint(c) {
			steps.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	})
}

// busyVCPU joins g like a vCPU stuck in a long exit: it reaches its next
// checkpoint only when leave is closed, and returns (exits) when exit is.
func busyVCPU(g *Gate, leave, exit chan struct{}) {
	c := &VCPU{}
	g.add(c)
	go func() {
		defer g.done(c)
		select {
		case <-leave:
		case <-exit:
			return
		}
		for g.checkpoint(c) {
			time.Sleep(100 * time.Microsecond)
		}
	}()
}

// TestGatePauseOvertakenByResume: a Resume while a Pause still waits for
// a vCPU makes that Pause return ErrResumed at once. Before, it waited
// for a park that never came (the vCPUs were running again) until its
// context ended: with the engine's context, for ever.
func TestGatePauseOvertakenByResume(t *testing.T) {
	g := NewGate()
	leave, exit := make(chan struct{}), make(chan struct{})
	busyVCPU(g, leave, exit)
	defer func() { close(leave); g.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- g.Pause(ctx) }()
	for !g.Paused() {
		time.Sleep(time.Millisecond)
	}
	g.Resume()
	select {
	case err := <-res:
		if !errors.Is(err, ErrResumed) {
			t.Fatalf("Pause overtaken by Resume returned %v, want ErrResumed", err)
		}
	case <-time.After(5 * time.Second): // at once; its context ends at 10 s
		t.Fatal("Pause still waiting 5 s after a Resume overtook it")
	}
	if g.Paused() {
		t.Error("gate paused after Resume")
	}
}

// TestGateExitWhilePausing: a vCPU whose loop returns while Pause waits
// for it counts as parked.
func TestGateExitWhilePausing(t *testing.T) {
	g := NewGate()
	var wg sync.WaitGroup
	var steps atomic.Int64
	fakeLoop(g, &wg, &steps)
	leave, exit := make(chan struct{}), make(chan struct{})
	busyVCPU(g, leave, exit)
	defer func() { g.Stop(); wg.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- g.Pause(ctx) }()
	time.Sleep(20 * time.Millisecond)
	close(exit)
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Pause: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Pause did not return after the last unparked vCPU exited")
	}
}

// TestGateJoinWhilePaused: a vCPU that starts while the gate is paused
// parks at its first checkpoint and never runs until Resume.
func TestGateJoinWhilePaused(t *testing.T) {
	g := NewGate()
	var wg sync.WaitGroup
	var first, late atomic.Int64
	fakeLoop(g, &wg, &first)
	defer func() { g.Stop(); wg.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	fakeLoop(g, &wg, &late)
	if err := g.Pause(ctx); err != nil { // waits for the newcomer to park
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := late.Load(); n != 0 {
		t.Fatalf("a vCPU that joined a paused gate ran %d steps", n)
	}
	g.Resume()
	deadline := time.Now().Add(2 * time.Second)
	for late.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if late.Load() == 0 {
		t.Fatal("the late vCPU did not run after Resume")
	}
}

// TestGatePauseResumeStorm runs Pause and Resume from several goroutines
// at once, with short deadlines, against running vCPU loops: no call may
// hang, each Pause says what happened, and afterwards one Pause still
// freezes every vCPU and one Resume lets all of them run.
func TestGatePauseResumeStorm(t *testing.T) {
	g := NewGate()
	var wg sync.WaitGroup
	var steps [4]atomic.Int64
	for i := range steps {
		fakeLoop(g, &wg, &steps[i])
	}
	var callers sync.WaitGroup
	for w := 0; w < 4; w++ {
		callers.Go(func() {
			for i := 0; i < 300; i++ {
				if (i+w)%2 == 0 {
					g.Resume()
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Millisecond)
				err := g.Pause(ctx)
				cancel()
				if err != nil && !errors.Is(err, ErrResumed) && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Pause: %v", err)
				}
			}
		})
	}
	stormDone := make(chan struct{})
	go func() { callers.Wait(); close(stormDone) }()
	select {
	case <-stormDone:
	case <-time.After(30 * time.Second):
		t.Fatal("Pause/Resume storm hung")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Pause(ctx); err != nil {
		t.Fatalf("Pause after the storm: %v", err)
	}
	var frozen [4]int64
	for i := range steps {
		frozen[i] = steps[i].Load()
	}
	time.Sleep(30 * time.Millisecond)
	for i := range steps {
		if steps[i].Load() != frozen[i] {
			t.Errorf("vCPU %d ran while paused after the storm", i)
		}
	}
	g.Resume()
	for i := range steps {
		if !ranPast(&steps[i], frozen[i]) {
			t.Errorf("vCPU %d did not run after the storm's Resume", i)
		}
	}
	g.Stop()
	joined := make(chan struct{})
	go func() { wg.Wait(); close(joined) }()
	select {
	case <-joined:
	case <-time.After(5 * time.Second):
		t.Fatal("vCPU loops did not return after Stop")
	}
}
