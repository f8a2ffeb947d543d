package vmm

import (
	"context"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/devices/balloon"
)

// TestBalloonHintEndsSessionAfterCancel: a BalloonHint whose context
// is cancelled while its session runs (the engine cancels a hints call
// at a dirty sync; the hint window at the provider's BalloonDone) still
// stops that session when a vCPU holds the device's lock for a moment
// just then (each of the guest's kicks takes it), so the next session
// can start. Before, the stop waited for the lock under the ended
// context and gave up at once: the session stayed requested (the guest
// went on hinting) and every BalloonHint after it failed, "stop it
// first", until the guest stopped by itself.
func TestBalloonHintEndsSessionAfterCancel(t *testing.T) {
	v := fakeWithRAM(t, StateRunning)
	g := statsGuestWith(t, v, balloon.FFreePageHint)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := (hintHost{v}).BalloonHint(ctx)
		done <- err
	}()
	for start := time.Now(); deviceCall(t, v.balloon.HintStatusContext).State != "requested"; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the hint session was not requested within 10 s")
		}
	}
	release := vcpuWaitsInDevice(t, v, g) // a vCPU in the device, holding its lock
	cancel()
	time.Sleep(100 * time.Millisecond) // BalloonHint meets the held lock
	release()                          // the vCPU leaves the device
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("BalloonHint had not returned 10 s after its context was cancelled and the device let go")
	}
	if st := deviceCall(t, v.balloon.HintStatusContext).State; st != "stopped" {
		t.Errorf("the session after its cancelled BalloonHint: %s; want stopped", st)
	}
	next, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if _, err := v.balloon.StartHintContext(next); err != nil {
		t.Errorf("the next session: %v; want it started", err)
	}
}
