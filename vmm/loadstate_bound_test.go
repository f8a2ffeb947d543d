package vmm

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/devices/uart"
	"github.com/ferryvm/ferry/vmm/internal/boundtest"
)

// TestRestoreDevicesBoundedWhileDeviceHeld: a state load's device step
// (restoreDevices, the last of LoadState's, which without KVM cannot run
// the ones before it) waits for the balloon's lock under the load's
// context, also where the virtio transport activates the device again.
// While something else holds the lock (here a goroutine waiting in the
// device for a page, as a vCPU in a post-copy fault; on an incoming VM,
// whose vCPUs never ran, a host call under a longer deadline of its
// own), the step fails at the load's deadline, saying the device is
// busy; once the lock is free the same state loads. Before, the
// transport's activation took the lock without a bound: the step, and
// LoadState with it (holding the run lock and the engine's Receive),
// hung until the lock was let go, whatever the load's context said.
func TestRestoreDevicesBoundedWhileDeviceHeld(t *testing.T) {
	v := fakeWithRAM(t, StateIncoming)
	v.uart = uart.New(io.Discard)
	g := newStatsGuest(t, v) // as a loaded state would have set the device up
	tr := v.balloonTransport.Save()
	bs := deviceCall(t, v.balloon.SaveContext)
	s := &savedVM{uart: v.uart.Save(), transport: &tr, balloon: &bs}

	release := vcpuWaitsInDevice(t, v, g)
	err := boundtest.Returns(t, "restoreDevices", 300*time.Millisecond, release,
		func(ctx context.Context) error { return v.restoreDevices(ctx, s) })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the balloon device is busy") {
		t.Errorf("restoreDevices while the balloon's lock is held: %v; want it to fail at its deadline, saying the device is busy", err)
	}

	release() // the page arrived
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.restoreDevices(ctx, s); err != nil {
		t.Fatalf("restoreDevices once the lock is free: %v", err)
	}
}

// holdState holds the lock that serialises state saves and loads, as a
// save or load in progress does, until release (which the test's
// cleanup calls too).
func holdState(t *testing.T, v *VM) (release func()) {
	lock, err := v.lockState(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(lock.Unlock) }
	t.Cleanup(release)
	return release
}

// TestStateSaveLoadBoundedWhileStateHeld: a state load or save waits for
// the state lock (another save or load in progress) under its context:
// VM.LoadState, a migration's LoadState (migrationVM, from the engine's
// Receive) and VM.SaveState fail at their deadline while it is held,
// and leave the run lock free; once it is free they go on (here to the
// blob's or the VM's own refusal). Before, they waited for it without a
// bound, holding the run lock.
func TestStateSaveLoadBoundedWhileStateHeld(t *testing.T) {
	for _, c := range []struct {
		name string
		st   State
		call func(ctx context.Context, v *VM) error
	}{
		{"VM.LoadState", StateIncoming, func(ctx context.Context, v *VM) error { return v.LoadState(ctx, nil) }},
		{"migration LoadState", StateIncoming, func(ctx context.Context, v *VM) error {
			own, err := v.claim(context.Background(), v.migrations(), transport.RoleReceive.String(), "", takes(func() {}),
				func(State) error { return nil })
			if err != nil {
				return err
			}
			defer own.release(nil)
			return migrationVM{v: v, own: own}.LoadState(ctx, nil)
		}},
		{"VM.SaveState", StatePaused, func(ctx context.Context, v *VM) error {
			_, err := v.SaveState(ctx)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := fakeVM(c.st)
			release := holdState(t, v)
			err := boundtest.Returns(t, c.name, 300*time.Millisecond, release,
				func(ctx context.Context) error { return c.call(ctx, v) })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s while another save or load holds the state: %v; want it to fail at its deadline", c.name, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := v.run.lock(ctx); err != nil {
				t.Fatalf("the run lock after %s gave up: %v; want it free", c.name, err)
			}
			v.run.unlock()

			release()
			if err := c.call(ctx, v); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s once the state is free: %v; want the blob's or the VM's own refusal", c.name, err)
			}
		})
	}
}
