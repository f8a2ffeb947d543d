package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// The handover over the real TCP transport and the frame proxy, without
// KVM: vmtest VMs (memfd RAM, no guest writes) whose pause and resume are
// counted. These run where the KVM tests of handover_test.go cannot, and
// check the proxy itself.

// memVM is a vmtest.VM that remembers when it last resumed.
type memVM struct {
	*vmtest.VM
	mu        sync.Mutex
	resumedAt time.Time
}

// memOpts: a destination (incoming), or a source whose final sync
// reports every page (dirtyWhenPaused: the final pass has the whole RAM
// to send) and that calls onPause when it paused.
type memOpts struct {
	incoming, dirtyWhenPaused bool
	onPause                   func()
}

// newMemVM is a VM of size bytes of RAM in one region.
func newMemVM(t *testing.T, size int, o memOpts) *memVM {
	m := &memVM{}
	vm, err := vmtest.New(vmtest.Options{Regions: []vmtest.Region{{GPA: 0, Size: uint64(size)}}, Incoming: o.incoming,
		OnPause: func() {
			if o.dirtyWhenPaused {
				m.MarkDirty(0, uint64(size))
			}
			if o.onPause != nil {
				o.onPause()
			}
		},
		OnResume: func() { m.mu.Lock(); m.resumedAt = time.Now(); m.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	m.VM = vm
	return m
}

// runs: the VM was resumed (a source after a failure, a destination
// after COMMIT) and runs.
func (v *memVM) runs() bool { return v.State() == vmtest.StateRunning && v.Counters().Resumes > 0 }

// migrateTCP runs engine.Send and engine.Receive over the TCP transport,
// the source connecting through proxy.
// afterSend, if set, runs when Send returned, before Receive is awaited.
func migrateTCP(t *testing.T, src, dst *memVM, listen, connect string, opt engine.Options,
	afterSend func()) (engine.Report, error, engine.Report, error) {
	cfg := schema.Config{"listen": listen, "connect": connect, "streams": int64(2), "compress": "none",
		"connect_timeout": int64(5 * time.Second)}
	log := hclog.NewNullLogger()
	ctx, cancel := context.WithTimeout(context.Background(), slow(time.Minute))
	defer cancel()
	opt.Transport = cfg
	// The proxy reads frames: authenticated, but in the clear.
	srcCreds, dstCreds, err := transport.MintCredentials(true)
	if err != nil {
		t.Fatal(err)
	}
	sopt, dopt := opt, opt
	sopt.Credentials, dopt.Credentials = srcCreds, dstCreds
	var rrep engine.Report
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() { rrep, rerr = engine.Receive(ctx, dst, tcp.New(log), dopt) })
	time.Sleep(100 * time.Millisecond) // the destination listens
	srep, serr := engine.Send(ctx, src, tcp.New(log), sopt)
	if afterSend != nil {
		afterSend()
	}
	wg.Wait()
	return srep, serr, rrep, rerr
}

func TestHandoverOverTCP(t *testing.T) {
	for _, tc := range []struct {
		name               string
		toDst              bool
		kind               uint32
		srcStatus, dstStat engine.Status
		dstRuns            bool
	}{
		{"nothing lost", true, 0, engine.StatusCompleted, engine.StatusCompleted, true},
		{"COMMIT lost", true, engine.MsgCommit, engine.StatusHandoverUnknown, engine.StatusHandoverUnknown, false},
		{"RUNNING lost", false, engine.MsgRunning, engine.StatusHandoverUnknown, engine.StatusCompleted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := newMemVM(t, 8<<20, memOpts{}), newMemVM(t, 8<<20, memOpts{incoming: true})
			listen := "127.0.0.1:" + itoa(freePort(t))
			proxy := newMsgProxy(t, listen, tc.toDst, tc.kind)
			srep, serr, rrep, rerr := migrateTCP(t, src, dst, listen, proxy.addr(),
				engine.Options{SwitchoverTimeout: 2 * time.Second}, nil)
			if proxy.unparsed.Load() || proxy.dropped.Load() != (tc.kind != 0) {
				t.Fatalf("proxy: unparsed %v, dropped %v", proxy.unparsed.Load(), proxy.dropped.Load())
			}
			if srep.Status != tc.srcStatus || rrep.Status != tc.dstStat {
				t.Fatalf("source %s (%v), destination %s (%v); want %s, %s", srep.Status, serr, rrep.Status, rerr,
					tc.srcStatus, tc.dstStat)
			}
			if errors.Is(serr, engine.ErrHandoverUnknown) != (tc.srcStatus == engine.StatusHandoverUnknown) ||
				src.runs() || dst.runs() != tc.dstRuns {
				t.Fatalf("source runs %v (%v), destination runs %v", src.runs(), serr, dst.runs())
			}
		})
	}
}

// TestSwitchoverDeadlineOverTCP: the destination stops reading at the
// pause (as under SIGSTOP); the source runs again within the deadline + 1 s.
func TestSwitchoverDeadlineOverTCP(t *testing.T) {
	listen := "127.0.0.1:" + itoa(freePort(t))
	proxy := newMsgProxy(t, listen, true, 0)
	var pausedAt time.Time
	src := newMemVM(t, 64<<20, memOpts{dirtyWhenPaused: true, onPause: func() {
		pausedAt = time.Now()
		proxy.stall.Store(true)
	}})
	dst := newMemVM(t, 64<<20, memOpts{incoming: true})
	const deadline = time.Second
	var took, returned time.Duration
	srep, serr, _, rerr := migrateTCP(t, src, dst, listen, proxy.addr(),
		engine.Options{SwitchoverTimeout: deadline, MaxPasses: 1}, func() {
			returned = time.Since(pausedAt)
			proxy.close() // the stopped destination dies: its Receive ends
		})
	src.mu.Lock()
	took = src.resumedAt.Sub(pausedAt)
	src.mu.Unlock()
	if serr == nil || srep.Status != engine.StatusFailed || !src.runs() {
		t.Fatalf("source %s (%v), runs %v", srep.Status, serr, src.runs())
	}
	t.Logf("source: %v; destination: %v; from the pause: resumed after %v, Send returned after %v", serr, rerr, took, returned)
	if took > deadline+time.Second {
		t.Errorf("the source ran again %v after the pause, want within %v", took, deadline+time.Second)
	}
	if dst.runs() {
		t.Error("the destination runs the guest too")
	}
}
