package vmm

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/devices/uart"
	"github.com/ferryvm/ferry/vmm/internal/boundtest"
)

// stuckToucher is a post-copy Toucher whose page never arrives until
// release is closed: the device code that touches guest RAM waits in
// it, as a vCPU does in a fault on a page the source has yet to send.
type stuckToucher struct {
	entered, release chan struct{}
	once             sync.Once
}

func (s *stuckToucher) Touch([]byte, bool) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return nil
}

// vcpuWaitsInDevice makes a vCPU (a goroutine) kick the balloon's
// statistics queue and wait in the device, holding its lock, for a
// ring page that does not arrive (stuckToucher) until release is
// called; the test's cleanup calls it too. Call it after the control
// server is served, so that its cleanup, which waits for the handlers,
// runs after release.
func vcpuWaitsInDevice(t *testing.T, v *VM, g *statsGuest) (release func()) {
	t.Helper()
	stuck := &stuckToucher{entered: make(chan struct{}), release: make(chan struct{})}
	v.ram.setToucher(stuck)
	vcpu := make(chan struct{})
	go func() {
		defer close(vcpu)
		g.give() // the guest's next statistics: the device hands the last buffer back, touching the ring
	}()
	<-stuck.entered
	released := false
	release = func() {
		if !released {
			released = true
			close(stuck.release)
			<-vcpu
		}
	}
	t.Cleanup(release)
	return release
}

// TestBalloonCommandsWhileVCPUWaitsInDevice: on a post-copy destination
// a vCPU kicks the balloon's statistics queue and waits, holding the
// device's lock, for a ring page that has not arrived. balloon (read),
// balloon-wait and hint-wait then fail at their deadline, saying the
// device is busy, and balloon-stats is refused at once (its migration
// owns the VM); once the page arrives the device answers again. Before,
// balloon and balloon-wait took the device's lock without a bound and
// hung until the page came (here: past the client's 5 s), whatever
// their deadline.
func TestBalloonCommandsWhileVCPUWaitsInDevice(t *testing.T) {
	v := fakeWithRAM(t, StateRunning) // a post-copy destination runs the guest
	g := newStatsGuest(t, v)
	call := serveCallsWithin(t, v, 500*time.Millisecond)
	own, err := v.claim(context.Background(), v.migrations(), transport.RoleReceive.String(), "", takes(func() {}),
		func(State) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	v.migration().progress(engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy})
	release := vcpuWaitsInDevice(t, v, g)

	for _, c := range []struct {
		cmd  string
		args any
		want string
	}{
		{"balloon", nil, "the balloon device is busy"},
		{"balloon-wait", timeoutArgs{TimeoutMS: 200}, "the balloon device is busy"},
		{"hint-wait", timeoutArgs{TimeoutMS: 200}, "the balloon device is busy"},
		{"balloon-stats", timeoutArgs{TimeoutMS: 200}, "balloon-stats is refused"},
	} {
		start := time.Now()
		err := call(c.cmd, c.args, nil)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), c.want) || took > 3*time.Second {
			t.Errorf("%s while a vCPU waits in the device: %v after %v; want %q within its deadline",
				c.cmd, err, took.Round(time.Millisecond), c.want)
		}
	}

	release() // the page arrived
	own.release(nil)
	var tg struct {
		TargetPages uint32 `json:"target_pages"`
	}
	if err := call("balloon", nil, &tg); err != nil {
		t.Fatalf("balloon once the vCPU left the device: %v", err)
	}
}

// TestBalloonPathsBoundedWhileVCPUWaitsInDevice: while a vCPU waits in
// the balloon device holding its lock (as in a post-copy fault), every
// path of the VMM's that reaches the device fails at its deadline,
// saying the device is busy, and leaves the run lock free: the control
// commands that change it (balloon with a target, balloon-stats's
// request, hint-start, hint-stop, hint-done; here on a VM no migration
// owns, where they are not refused), a hint provider's calls into the
// VMM (the Host service's BalloonHint and BalloonDone) and the device
// sections of a state save (state-save, a migration source's
// SaveState). Once the vCPU left the device they work again. Before,
// each took the device's lock without a bound and hung until the page
// came; the control commands hung holding the run lock, and pause,
// resume, quit and migrations with them.
func TestBalloonPathsBoundedWhileVCPUWaitsInDevice(t *testing.T) {
	command := func(cmd string, args any) func(*testing.T, *VM, func(string, any, any) error, func()) {
		return func(t *testing.T, v *VM, call func(string, any, any) error, _ func()) {
			start := time.Now()
			err := call(cmd, args, nil)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "the balloon device is busy") || took > 3*time.Second {
				t.Errorf("%s while a vCPU waits in the device: %v after %v; want it to fail at its deadline, saying the device is busy",
					cmd, err, took.Round(time.Millisecond))
			}
			for _, after := range []string{"pause", "resume"} {
				if err := call(after, nil, nil); err != nil {
					t.Errorf("%s after %s: %v; want the run lock free", after, cmd, err)
				}
			}
		}
	}
	direct := func(name string, fn func(context.Context, *VM) error) func(*testing.T, *VM, func(string, any, any) error, func()) {
		return func(t *testing.T, v *VM, _ func(string, any, any) error, release func()) {
			err := boundtest.Returns(t, name, 300*time.Millisecond, release, func(ctx context.Context) error { return fn(ctx, v) })
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the balloon device is busy") {
				t.Errorf("%s while a vCPU waits in the device: %v; want it to fail at its deadline, saying the device is busy", name, err)
			}
		}
	}
	for _, c := range []struct {
		name string
		run  func(t *testing.T, v *VM, call func(string, any, any) error, release func())
	}{
		{"balloon", command("balloon", map[string]uint64{"target_mib": 1})},
		{"balloon-stats", command("balloon-stats", timeoutArgs{TimeoutMS: 200})},
		{"hint-start", command("hint-start", nil)},
		{"hint-stop", command("hint-stop", nil)},
		{"hint-done", command("hint-done", nil)},
		{"BalloonHint", direct("BalloonHint", func(ctx context.Context, v *VM) error {
			_, err := (hintHost{v}).BalloonHint(ctx)
			return err
		})},
		{"BalloonDone", direct("BalloonDone", func(ctx context.Context, v *VM) error { return (hintHost{v}).BalloonDone(ctx) })},
		{"state save", direct("saveDevices", func(ctx context.Context, v *VM) error {
			_, err := v.saveDevices(ctx)
			return err
		})},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := fakeWithRAM(t, StateRunning)
			v.uart = uart.New(io.Discard) // saved before the balloon
			g := newStatsGuest(t, v)
			call := serveCallsWithin(t, v, 500*time.Millisecond)
			release := vcpuWaitsInDevice(t, v, g)
			c.run(t, v, call, release)
			release() // the page arrived
			if err := call("balloon", map[string]uint64{"target_mib": 1}, nil); err != nil {
				t.Fatalf("balloon once the vCPU left the device: %v", err)
			}
			if got := deviceCall(t, v.balloon.TargetContext).TargetPages; got != 256 {
				t.Errorf("balloon target %d pages once the vCPU left the device, want 256", got)
			}
		})
	}
}
