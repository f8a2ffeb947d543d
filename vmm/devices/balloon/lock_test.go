package balloon

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/internal/boundtest"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// TestHostCallsTakeContext: every exported method of the device, but
// the handlers its transport calls from vCPU threads (virtio.Device)
// and the set-up made before the guest runs (SetSignaller,
// WithoutReporting), takes a context first: no host caller can wait for
// the device's lock without a bound (lock.go). Before, each host call
// had a twin without a context (SetTarget, Target, RequestStats,
// LastStats, StartHint, StopHint, DoneHint, HintStatus, SetHintSink,
// Save, Restore) that waited for the lock as long as a vCPU held it.
func TestHostCallsTakeContext(t *testing.T) {
	skip := map[string]bool{"SetSignaller": true, "WithoutReporting": true}
	handlers := reflect.TypeFor[virtio.Device]()
	for i := range handlers.NumMethod() {
		skip[handlers.Method(i).Name] = true
	}
	ctxType := reflect.TypeFor[context.Context]()
	dev := reflect.TypeFor[*Device]()
	for i := range dev.NumMethod() {
		m := dev.Method(i)
		if skip[m.Name] {
			continue
		}
		if m.Type.NumIn() < 2 || m.Type.In(1) != ctxType { // In(0) is the receiver
			t.Errorf("(*Device).%s takes no context first: a host call that waits for the device's lock without a bound", m.Name)
		}
	}
}

// TestHostCallsBoundedWhileDeviceHeld: while something holds the
// device's lock (here the test; on a post-copy destination a vCPU that
// waits in a fault for a page the source has yet to send), every host
// call that takes a context fails when it ends, saying why, and changes
// nothing, instead of waiting for the lock; once the lock is free they
// answer again. Before, each took the lock without a bound (and
// WaitHint, WaitActual and AwaitStats took it again after every
// wake-up, their context's too), so the control commands balloon,
// balloon-wait, balloon-stats and hint-wait hung past their deadline;
// SetTarget, RequestStats, the hint session's calls, Save and Restore
// had no bounded form at all.
func TestHostCallsBoundedWhileDeviceHeld(t *testing.T) {
	f := newFixture(t, FStatsVQ|FFreePageHint)
	saved := hostCall(t, f.dev.SaveContext)
	type call struct {
		name string
		call func(context.Context) error
		now  bool // answers at once once the lock is free (the others wait for the guest)
	}
	calls := []call{
		{"TargetContext", func(ctx context.Context) error { _, err := f.dev.TargetContext(ctx); return err }, true},
		{"SetTargetContext", func(ctx context.Context) error { _, err := f.dev.SetTargetContext(ctx, 64); return err }, true},
		{"RequestStatsContext", func(ctx context.Context) error { _, err := f.dev.RequestStatsContext(ctx); return err }, true},
		{"LastStatsContext", func(ctx context.Context) error { _, err := f.dev.LastStatsContext(ctx); return err }, true},
		{"StartHintContext", func(ctx context.Context) error { _, err := f.dev.StartHintContext(ctx); return err }, true},
		{"HintStatusContext", func(ctx context.Context) error { _, err := f.dev.HintStatusContext(ctx); return err }, true},
		{"StopHintContext", func(ctx context.Context) error { _, err := f.dev.StopHintContext(ctx); return err }, true},
		{"DoneHintContext", func(ctx context.Context) error { _, err := f.dev.DoneHintContext(ctx); return err }, true},
		{"SetHintSinkContext", func(ctx context.Context) error { return f.dev.SetHintSinkContext(ctx, f.sink) }, true},
		{"SaveContext", func(ctx context.Context) error { _, err := f.dev.SaveContext(ctx); return err }, true},
		{"RestoreContext", func(ctx context.Context) error { return f.dev.RestoreContext(ctx, saved) }, true},
		{"WaitActual", func(ctx context.Context) error { _, err := f.dev.WaitActual(ctx); return err }, true},
		{"AwaitStats", func(ctx context.Context) error { _, err := f.dev.AwaitStats(ctx, time.Time{}); return err }, false},
		{"WaitHint", func(ctx context.Context) error { _, err := f.dev.WaitHint(ctx); return err }, false},
	}
	f.dev.mu.Lock()
	for _, c := range calls {
		start := time.Now()
		err := boundtest.Returns(t, c.name, 100*time.Millisecond, f.dev.mu.Unlock, c.call)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the balloon device is busy") {
			t.Errorf("%s while the device is held: %v; want it to give up at its deadline, saying why", c.name, err)
		}
		t.Logf("%s gave up after %v", c.name, time.Since(start).Round(time.Millisecond))
	}
	f.dev.mu.Unlock()
	if got := hostCall(t, f.dev.SaveContext); !reflect.DeepEqual(got, saved) {
		t.Errorf("the calls that gave up changed the device: %+v, was %+v", got, saved)
	}
	for _, c := range calls {
		if !c.now {
			continue
		}
		if err := boundtest.Returns(t, c.name, 5*time.Second, nil, c.call); err != nil {
			t.Errorf("%s once the device is free: %v", c.name, err)
		}
	}
}

// TestWaitActualWakes: WaitActual returns as soon as actual and target
// agree, whichever moved: the guest's actual (WriteConfig) or the host's
// target (SetTargetContext, which before woke no waiter: it waited for the next
// change, or its deadline).
func TestWaitActualWakes(t *testing.T) {
	f := newFixture(t, 0)
	setActual := func(pages uint32) {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], pages)
		f.dev.WriteConfig(4, b[:])
	}
	for _, tc := range []struct {
		name string
		move func()
	}{
		{"the guest's actual", func() { setTarget(t, f.dev, 8); setActual(8) }},
		{"the host's target", func() { setActual(16); setTarget(t, f.dev, 16) }},
	} {
		res := make(chan error, 1)
		waiting := make(chan struct{})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			close(waiting)
			tg, err := f.dev.WaitActual(ctx)
			if err == nil && tg.ActualPages != tg.TargetPages {
				err = errors.New("returned with actual and target apart")
			}
			res <- err
		}()
		<-waiting
		start := time.Now()
		tc.move()
		if err := <-res; err != nil || time.Since(start) > 5*time.Second {
			t.Errorf("moving %s: WaitActual %v after %v; want it done at once", tc.name, err, time.Since(start))
		}
	}
}

// TestVCPUPathsAllocFree: while no host call waits for a change, the
// vCPU's register handlers that make one (WriteConfig of actual, a
// kick of a queue with nothing queued) allocate nothing: a change only
// wakes waiters there are. Before, each closed the changed channel and
// made a new one, an allocation per MMIO exit (and ten times the time
// of the mutex and sync.Cond it replaced). The kick is also made as the
// guest makes it, a QueueNotify write through the transport's kick gate
// (virtio's kick.go).
func TestVCPUPathsAllocFree(t *testing.T) {
	f := newFixture(t, 0)
	var b, queue0 [4]byte
	binary.LittleEndian.PutUint32(b[:], 8)
	for name, fn := range map[string]func(){
		"WriteConfig":        func() { f.dev.WriteConfig(4, b[:]) },
		"Notify(empty)":      func() { f.dev.Notify(0) },
		"QueueNotify(empty)": func() { f.tr.Write(0x050, queue0[:]) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s with no waiter: %v allocations a call, want none", name, n)
		}
	}
}
