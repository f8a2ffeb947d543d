package hint_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// balloonVMM is a VMM's balloon as a hint.Host: a hint session opens the
// window in which the guest holds its hinted blocks (from its start to
// its end: a DONE while it runs does not close it), DONE closes it. It
// records how many calls ran at once and how many were running when
// asked (running).
type balloonVMM struct {
	mu       sync.Mutex
	open     bool          // the guest holds hinted blocks
	sessions int           // BalloonHint calls
	dones    int           // BalloonDone calls
	now      int           // calls running
	most     int           // the most calls that ran at once
	session  time.Duration // how long a session runs (until ctx ends, if sooner)
}

func (v *balloonVMM) in() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.now++
	v.most = max(v.most, v.now)
}

func (v *balloonVMM) out() { v.mu.Lock(); v.now--; v.mu.Unlock() }

func (v *balloonVMM) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	v.in()
	defer v.out()
	v.mu.Lock()
	v.open = true
	v.sessions++
	d := v.session
	v.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	v.mu.Lock()
	v.open = true // the guest hinted blocks until the session ended
	v.mu.Unlock()
	return []hint.GPARange{{GPA: 0, Size: 4096}}, nil
}

func (v *balloonVMM) BalloonDone(context.Context) error {
	v.in()
	defer v.out()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.open = false
	v.dones++
	return nil
}

func (v *balloonVMM) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, hint.ErrNotSupported
}

// state returns whether the window is open, and how many calls run.
func (v *balloonVMM) state() (open bool, running int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.open, v.now
}

// hostile is a provider (in process, served over gRPC) that keeps the
// window's Host and does to it what hints and close say.
func hostile(configure, hints, close func(ctx context.Context, h hint.Host) error) hint.Provider {
	var mu sync.Mutex
	var host hint.Host
	get := func() hint.Host { mu.Lock(); defer mu.Unlock(); return host }
	or := func(f func(context.Context, hint.Host) error) func(context.Context, hint.Host) error {
		if f == nil {
			return func(context.Context, hint.Host) error { return nil }
		}
		return f
	}
	configure, hints, close = or(configure), or(hints), or(close)
	return &hint.Mock{
		ConfigureFunc: func(ctx context.Context, _ hint.Config, _ hint.VM, h hint.Host) error {
			mu.Lock()
			host = h
			mu.Unlock()
			return configure(ctx, h)
		},
		HintsFunc: func(ctx context.Context, _ hint.Request, _ func([]hint.Range) error) error {
			return hints(ctx, get())
		},
		CloseFunc: func(ctx context.Context, _ bool) error { return close(ctx, get()) },
	}
}

func session(ctx context.Context, h hint.Host) error { _, err := h.BalloonHint(ctx); return err }

// TestWindowEndsWithDone: however a provider uses the balloon, the guest
// gets its hinted blocks back (the VMM sees DONE) when the hint window
// ends, and no VMM call still runs then. Before, only the provider sent
// DONE: one that did not left the guest without those pages for good.
func TestWindowEndsWithDone(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    hint.Provider
		run  func(ctx context.Context, p hint.Provider, vmm *balloonVMM) // ends the window its way
	}{
		{"Close without DONE", hostile(nil, session, nil), func(ctx context.Context, p hint.Provider, vmm *balloonVMM) {
			p.Hints(ctx, hint.Request{Generation: 1}, nil)
			p.Close(ctx, true)
		}},
		{"DONE, then another session", hostile(nil, func(ctx context.Context, h hint.Host) error {
			session(ctx, h)
			h.BalloonDone(ctx)
			return session(ctx, h)
		}, nil), func(ctx context.Context, p hint.Provider, vmm *balloonVMM) {
			p.Hints(ctx, hint.Request{Generation: 1}, nil)
			p.Close(ctx, true)
		}},
		{"a session in Configure, which fails", hostile(func(ctx context.Context, h hint.Host) error {
			session(ctx, h)
			return errors.New("refused after all")
		}, nil, nil), func(ctx context.Context, p hint.Provider, vmm *balloonVMM) {}},
		{"a new window without DONE", hostile(nil, session, nil), func(ctx context.Context, p hint.Provider, vmm *balloonVMM) {
			p.Hints(ctx, hint.Request{Generation: 1}, nil)
			p.Configure(ctx, nil, hint.VM{}, vmm) // the first window ends
		}},
		{"a session still running at Close", hostile(nil, func(_ context.Context, h hint.Host) error {
			go session(context.Background(), h) // no deadline; the VMM waits for the guest
			return nil
		}, nil), func(ctx context.Context, p hint.Provider, vmm *balloonVMM) {
			vmm.session = time.Minute
			p.Hints(ctx, hint.Request{Generation: 1}, nil)
			waitFor(t, func() bool { open, _ := vmm.state(); return open })
			p.Close(ctx, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vmm := &balloonVMM{}
			p := overGRPC(t, tc.p, nil)
			ctx := tctx(t)
			p.Configure(ctx, nil, hint.VM{}, vmm)
			tc.run(ctx, p, vmm)
			if open, running := vmm.state(); open || running != 0 {
				t.Errorf("the window ended with the guest's blocks held (%v) and %d VMM calls running (%d sessions, %d DONE)",
					open, running, vmm.sessions, vmm.dones)
			}
		})
	}
}

// TestWindowEndsWithDoneProcess: the same for a provider whose process
// crashes right after it began a session, and for one that was stopped
// (SIGSTOP) after it did, so its Close never comes.
func TestWindowEndsWithDoneProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes")
	}
	for _, tc := range []struct{ name, plugin string }{
		{"crash after a session", "ferry-hint-balloon-crash"},
		{"stopped after a session", "ferry-hint-balloon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vmm := &balloonVMM{}
			p := launch(t, tc.plugin, nil)
			ctx := tctx(t)
			if err := p.Configure(ctx, nil, hint.VM{}, vmm); err != nil {
				t.Fatal(err)
			}
			p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(5 * time.Second)}, func([]hint.Range) error { return nil })
			if open, _ := vmm.state(); !open {
				t.Fatal("the provider began no session")
			}
			if tc.plugin == "ferry-hint-balloon" {
				if plugintest.SignalChildren(t, tc.plugin, syscall.SIGSTOP) != 1 {
					t.Fatal("no plugin process to stop")
				}
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			p.Close(cctx, true)
			if open, running := vmm.state(); open || running != 0 {
				t.Errorf("after Close: the guest's blocks held %v, %d VMM calls running (%d sessions, %d DONE)",
					open, running, vmm.sessions, vmm.dones)
			}
			p.Kill()
		})
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// balloonCrash begins a balloon hint session in Hints, then its process
// exits.
func balloonCrash() hint.Provider {
	return hostile(nil, func(ctx context.Context, h hint.Host) error {
		session(ctx, h)
		os.Exit(3)
		return nil
	}, nil)
}

// TestHostCallsOneAtATime: a provider that calls the VMM's balloon from
// many goroutines at once reaches the VMM one call at a time (a VMM's
// balloon need not be written for concurrent sessions: the reference
// VMM's is not); calls beyond a few waiting are refused at once, so a
// flood of calls costs the VMM no goroutine that waits; every call
// returns, and the window's end still sends DONE.
func TestHostCallsOneAtATime(t *testing.T) {
	vmm := &balloonVMM{session: 20 * time.Millisecond}
	const calls = 64
	var mu sync.Mutex
	var ok, refused, other int
	p := overGRPC(t, hostile(nil, func(ctx context.Context, h hint.Host) error {
		var wg sync.WaitGroup
		for range calls {
			wg.Go(func() {
				_, err := h.BalloonHint(ctx)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case strings.Contains(err.Error(), "one capability call at a time"),
					strings.Contains(err.Error(), "session per hints request"): // TestBalloonHintBudget
					refused++
				default:
					other++
					t.Log(err)
				}
			})
		}
		wg.Wait()
		return nil
	}, nil), nil)
	ctx := tctx(t)
	p.Configure(ctx, nil, hint.VM{}, vmm)
	p.Hints(ctx, hint.Request{Generation: 1}, nil)
	t.Logf("%d calls: %d answered, %d refused, %d failed otherwise; the VMM ran %d at once", calls, ok, refused, other, vmm.most)
	if vmm.most != 1 || ok == 0 || ok+refused != calls {
		t.Errorf("the VMM ran %d calls at once; %d answered, %d refused, %d failed otherwise", vmm.most, ok, refused, other)
	}
	p.Close(ctx, true)
	if open, running := vmm.state(); open || running != 0 {
		t.Errorf("after Close: the guest's blocks held %v, %d VMM calls running", open, running)
	}
}

// deviceVMM is a balloon as the reference VMM's is (vmm/hinthost.go over
// vmm/devices/balloon): a hint session waits for the guest's STOP (here:
// never) until its context ends, and a DONE ends a running session at
// once (DoneHintContext makes the session idle, which ends WaitHint).
type deviceVMM struct {
	mu      sync.Mutex
	running chan struct{} // closed by DONE: the running session ends; nil: none runs
	started chan struct{} // closed when the first session began
	dones   int
}

func newDeviceVMM() *deviceVMM { return &deviceVMM{started: make(chan struct{})} }

func (v *deviceVMM) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	v.mu.Lock()
	end := make(chan struct{})
	v.running = end
	select {
	case <-v.started:
	default:
		close(v.started)
	}
	v.mu.Unlock()
	select {
	case <-end: // DONE
	case <-ctx.Done():
	}
	return []hint.GPARange{{GPA: 0, Size: 4096}}, nil
}

func (v *deviceVMM) BalloonDone(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dones++
	if v.running != nil {
		close(v.running)
		v.running = nil
	}
	return nil
}

func (v *deviceVMM) CMMABits(context.Context, uint64, int) (uint64, []byte, error) {
	return 0, nil, hint.ErrNotSupported
}

// TestCloseDuringSession: the engine closes a provider's window while a
// Hints call still runs (Send's Close(final) comes before it collects the
// calls, and a migration that failed mid-pass never cancelled them), so
// the balloon provider's Close sends DONE while its BalloonHint waits for
// the guest. The reference VMM ends the session at that DONE; behind the
// window the DONE must not wait for the session's deadline instead. Here
// the session's deadline (10 s) is longer than Close's bound (6 s, as
// the engine's 5 s closeTimeout is shorter than a hint deadline a job
// may set): before, the provider's DONE waited in the window until
// Close's context ended, Close failed with its deadline, and the guest
// got DONE only from the window's end.
func TestCloseDuringSession(t *testing.T) {
	for _, mode := range []string{"InProcessGRPC", "Plugin"} {
		t.Run(mode, func(t *testing.T) {
			if testing.Short() && mode == "Plugin" {
				t.Skip("-short: plugin processes")
			}
			vmm := newDeviceVMM()
			var p hint.Provider
			if mode == "Plugin" {
				p = launch(t, "ferry-hint-balloon", nil)
			} else {
				p = overGRPC(t, newBalloonProvider(quietLogger()), nil)
			}
			ctx := tctx(t)
			if err := p.Configure(ctx, nil, hint.VM{}, vmm); err != nil {
				t.Fatal(err)
			}
			hinted := make(chan error, 1)
			go func() {
				hinted <- p.Hints(ctx, hint.Request{Generation: 1, Deadline: time.Now().Add(10 * time.Second)},
					func([]hint.Range) error { return nil })
			}()
			select {
			case <-vmm.started:
			case <-time.After(5 * time.Second):
				t.Fatal("the provider began no session")
			}
			cctx, cancel := context.WithTimeout(ctx, 6*time.Second)
			defer cancel()
			start := time.Now()
			err := p.Close(cctx, true)
			took := time.Since(start)
			if err != nil || took > 3*time.Second { // at once; room for a loaded machine
				t.Errorf("Close during a session: %v after %v; want nil at once (the DONE ends the session)", err, took)
			}
			select {
			case <-hinted:
			case <-time.After(5 * time.Second):
				t.Fatal("Hints did not return")
			}
			vmm.mu.Lock()
			defer vmm.mu.Unlock()
			if vmm.dones == 0 || vmm.running != nil {
				t.Errorf("%d DONE; a session still runs: %v", vmm.dones, vmm.running != nil)
			}
		})
	}
}

// TestOneDone: a provider that sends DONE in its Close, as the balloon
// provider does, gets no second DONE from the window's end: the VMM sees
// exactly one per window (a second would be harmless to the reference
// VMM, whose DoneHintContext changes nothing when DONE is already shown,
// but it would mean the window lost track of what it owes).
func TestOneDone(t *testing.T) {
	vmm := newDeviceVMM()
	p := overGRPC(t, newBalloonProvider(quietLogger()), nil)
	ctx := tctx(t)
	if err := p.Configure(ctx, nil, hint.VM{}, vmm); err != nil {
		t.Fatal(err)
	}
	for g := uint64(1); g <= 3; g++ {
		p.Hints(ctx, hint.Request{Generation: g, Deadline: time.Now().Add(50 * time.Millisecond)}, func([]hint.Range) error { return nil })
	}
	if err := p.Close(ctx, true); err != nil {
		t.Fatal(err)
	}
	vmm.mu.Lock()
	defer vmm.mu.Unlock()
	if vmm.dones != 1 {
		t.Errorf("the VMM got %d DONE for one window, want 1", vmm.dones)
	}
}

// TestBalloonHintBudget: a provider that calls BalloonHint in a loop
// makes the guest run no more free page hint sessions than the engine
// asks it for hints (one per Hints call), plus a few: the calls beyond
// are refused at once with an error that says why, and is no
// ErrNotSupported (the balloon provider would give up for good). Before,
// every call began a session: ring-0 work in the guest for as long as
// the window lasted.
func TestBalloonHintBudget(t *testing.T) {
	vmm := &balloonVMM{}
	var ok, refused int
	var other []error
	loop := func(ctx context.Context, h hint.Host) error {
		for range 100 {
			_, err := h.BalloonHint(ctx)
			switch {
			case err == nil:
				ok++
			case strings.Contains(err.Error(), "balloon free page hint session per hints request") && !errors.Is(err, hint.ErrNotSupported):
				refused++
			default:
				other = append(other, err)
			}
		}
		return nil
	}
	p := overGRPC(t, hostile(loop, loop, nil), nil)
	ctx := tctx(t)
	check := func(when string, wantOK int) {
		t.Helper()
		if ok != wantOK || refused != 100-wantOK || len(other) != 0 {
			t.Errorf("%s: %d sessions of 100 calls, %d refused, other errors %v; want %d sessions", when, ok, refused, other, wantOK)
		}
		ok, refused, other = 0, 0, nil
	}
	if err := p.Configure(ctx, nil, hint.VM{}, vmm); err != nil {
		t.Fatal(err)
	}
	check("in Configure", hint.BalloonCredit)
	for g := uint64(1); g <= 3; g++ {
		p.Hints(ctx, hint.Request{Generation: g}, nil)
		check("in Hints", 1)
	}
	// A provider that calls once per Hints, as plugins/balloon does, is never refused.
	p = overGRPC(t, hostile(nil, session, nil), nil)
	if err := p.Configure(ctx, nil, hint.VM{}, vmm); err != nil {
		t.Fatal(err)
	}
	for g := uint64(1); g <= 3*hint.BalloonCredit; g++ {
		if err := p.Hints(ctx, hint.Request{Generation: g}, nil); err != nil {
			t.Fatalf("Hints %d: %v", g, err)
		}
	}
}
