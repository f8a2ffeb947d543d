package vmm

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
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
	stuck := &stuckToucher{entered: make(chan struct{}), release: make(chan struct{})}
	v.ram.setToucher(stuck)
	vcpu := make(chan struct{})
	go func() {
		defer close(vcpu)
		g.give() // the guest's next statistics: the device hands the last buffer back, touching the ring
	}()
	<-stuck.entered
	released := false
	release := func() {
		if !released {
			released = true
			close(stuck.release)
			<-vcpu
		}
	}
	t.Cleanup(release) // before the control server's cleanup, which waits for its handlers

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
