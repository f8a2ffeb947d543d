package vmm

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

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
