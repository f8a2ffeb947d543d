package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// The handover over the real TCP transport and the frame proxy, without
// KVM: memfd "VMs" whose pause and resume are counted. These run where
// the KVM tests of handover_test.go cannot, and check the proxy itself.

// memVM is a framework.Source and framework.Target over one memfd.
type memVM struct {
	fd      int
	mem     []byte
	onPause func()
	// dirtyWhenPaused: the final sync reports every page, so the final
	// pass has the whole RAM to send.
	dirtyWhenPaused bool

	mu        sync.Mutex
	paused    bool
	resumes   int
	resumedAt time.Time
}

func newMemVM(t *testing.T, size int) *memVM {
	fd, err := unix.MemfdCreate("handover-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m); unix.Close(fd) })
	for i := 0; i < size; i += 4096 * 3 {
		m[i] = byte(i / 4096)
	}
	return &memVM{fd: fd, mem: m}
}

func (v *memVM) RAM() framework.Layout {
	return framework.Layout{{GPA: 0, Size: uint64(len(v.mem)), Fd: v.fd}}
}
func (v *memVM) Memory(int) []byte    { return v.mem }
func (v *memVM) StartDirtyLog() error { return nil }
func (v *memVM) SyncDirtyLog(b *bitmap.Bitmap) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused && v.dirtyWhenPaused {
		b.SetAll()
	}
	return nil
}
func (v *memVM) StopDirtyLog() error                       { return nil }
func (v *memVM) SaveState(context.Context) ([]byte, error) { return []byte("memvm-state"), nil }
func (v *memVM) LoadState(context.Context, []byte) error   { return nil }
func (v *memVM) Pause(context.Context) error {
	v.mu.Lock()
	v.paused = true
	v.mu.Unlock()
	if v.onPause != nil {
		v.onPause()
	}
	return nil
}
func (v *memVM) Resume() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = false
	v.resumes++
	v.resumedAt = time.Now()
	return nil
}
func (v *memVM) runs() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.resumes > 0 && !v.paused }

// migrateTCP runs engine.Send and engine.Receive over the TCP transport,
// the source connecting through proxy.
// afterSend, if set, runs when Send returned, before Receive is awaited.
func migrateTCP(t *testing.T, src, dst *memVM, listen, connect string, opt engine.Options,
	afterSend func()) (engine.Report, error, engine.Report, error) {
	cfg := schema.Config{"listen": listen, "connect": connect, "streams": int64(2), "compress": "none",
		"connect_timeout": int64(5 * time.Second)}
	log := hclog.NewNullLogger()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
		srcStatus, dstStat string
		dstRuns            bool
	}{
		{"nothing lost", true, 0, engine.StatusCompleted, engine.StatusCompleted, true},
		{"COMMIT lost", true, engine.MsgCommit, engine.StatusHandoverUnknown, engine.StatusHandoverUnknown, false},
		{"RUNNING lost", false, engine.MsgRunning, engine.StatusHandoverUnknown, engine.StatusCompleted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := newMemVM(t, 8<<20), newMemVM(t, 8<<20)
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
	src, dst := newMemVM(t, 64<<20), newMemVM(t, 64<<20)
	listen := "127.0.0.1:" + itoa(freePort(t))
	proxy := newMsgProxy(t, listen, true, 0)
	var pausedAt time.Time
	src.onPause = func() {
		pausedAt = time.Now()
		proxy.stall.Store(true)
	}
	const deadline = time.Second
	src.dirtyWhenPaused = true
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
