package vmtest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// The embedding tests: a VMM (here vmtest.VM) embeds Ferry through its
// exported API only (framework, session, transport, engine's types) and
// migrates over the real TCP transport plugin, with the real balloon
// hint provider calling back into the VMM's hint.Host.

// specs returns both sides' specs for a migration over TCP on addr, with
// fresh credentials and, if balloon, the balloon provider.
func specs(t *testing.T, balloon bool) (src, dst session.Spec) {
	dir := plugins(t)
	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	tcp := session.Plugin{Path: filepath.Join(dir, "ferry-transport-tcp"),
		Config: map[string]any{"listen": localAddr(), "streams": 2}}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src = session.Spec{Role: transport.RoleSend, Transport: tcp, Log: log, Engine: engine.Options{Credentials: srcCreds, VerifyPages: true}}
	dst = session.Spec{Role: transport.RoleReceive, Transport: tcp, Log: log, Engine: engine.Options{Credentials: dstCreds, VerifyPages: true,
		IncomingTimeout: 30 * time.Second}}
	if balloon {
		src.Hints = []session.Hint{{Name: "balloon", Deadline: 5 * time.Second,
			Plugin: session.Plugin{Path: filepath.Join(dir, "ferry-hint-balloon")}}}
		// These guests are sent before the balloon answers: hold each pass
		// for it, so its free pages are skipped.
		src.Engine.HintHold = 5 * time.Second
	}
	return src, dst
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// run runs Receive and Send concurrently, as two VMM processes would.
func run(src, dst *vmtest.VM, sspec, dspec session.Spec) (srep engine.Report, serr error, drep engine.Report, derr error) {
	return runCtx(context.Background(), src, dst, sspec, dspec)
}

// runCtx is run with the source's context sctx.
func runCtx(sctx context.Context, src, dst *vmtest.VM, sspec, dspec session.Spec) (srep engine.Report, serr error, drep engine.Report, derr error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sctx, scancel := context.WithTimeout(sctx, time.Minute)
	defer scancel()
	var wg sync.WaitGroup
	wg.Go(func() { drep, derr = session.Receive(ctx, dst, dspec) })
	srep, serr = session.Send(sctx, src, src, sspec)
	wg.Wait()
	return srep, serr, drep, derr
}

// device writes into the source's RAM as the VMM's own device model would
// (its own dirty log) until the returned stop is called, which returns
// how many writes landed.
func device(src *vmtest.VM) (stop func() int) {
	quit, done := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for i := uint64(0); ; i++ {
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Microsecond):
			}
			if src.Write((i%256)*framework.PageSize) == nil { // low RAM, below the free block
				n++
			}
		}
	}()
	return func() int { close(quit); return <-done }
}

// TestEmbedMigration is the whole embedding: the destination runs, the
// source stays paused, the balloon's free pages were skipped (and arrive
// as zero), every other page is equal on both sides.
func TestEmbedMigration(t *testing.T) {
	var src *vmtest.VM
	src = newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16,
		// A VMM write right after the bulk pass sent page 3: only the
		// VMM's own dirty log can make it travel again.
		OnSync: func(n int) {
			if n == 2 {
				if err := src.Write(3 * framework.PageSize); err != nil {
					t.Error(err)
				}
			}
		}})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, true)
	stopDevice := device(src)
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	writes := stopDevice()
	if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		t.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
	}
	if src.State() != vmtest.StatePaused || dst.State() != vmtest.StateRunning || src.Counters().Resumes != 0 {
		t.Fatalf("source %s (%+v), destination %s", src.State(), src.Counters(), dst.State())
	}
	c := src.Counters()
	free := src.Free()
	t.Logf("report: %d ms (downtime %d ms), %d passes, %d sent, %d zero, %d skipped %v, %d checked (%d free); %d guest writes, %d device writes; hints %+v",
		srep.TotalMS, srep.DowntimeMS, srep.Passes, srep.PagesSent, srep.PagesZero, srep.PagesSkipped, srep.SkippedBy, srep.PagesChecked, srep.PagesFree,
		c.Writes, writes, srep.Hints)
	if got := srep.SkippedBy["balloon"]; got == 0 || got != src.Reported() || got != free.Count() {
		t.Errorf("balloon skipped %d pages; the fake reported %d free, holds %d free", got, src.Reported(), free.Count())
	}
	if c.HintSessions == 0 || c.HintDones == 0 || src.HintWindowOpen() {
		t.Errorf("balloon: %d sessions, %d DONE, window open %v", c.HintSessions, c.HintDones, src.HintWindowOpen())
	}
	if err := vmtest.Equal(src, dst); err != nil {
		t.Error(err)
	}
	if err := dst.Verify(); err != nil {
		t.Error(err)
	}
	for p := free.NextSet(0); p < free.Len(); p = free.NextSet(p + 1) {
		if pg := dst.Page(p); !bytes.Equal(pg, make([]byte, len(pg))) {
			t.Fatalf("free page %d arrived with data: it was sent", p)
		}
	}
}

// TestEmbedRefused: a destination that does not trust the source (its
// credentials are another job's) refuses it; the source never pauses and
// its guest runs on, intact, and the balloon's window is closed.
func TestEmbedRefused(t *testing.T) {
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, true)
	_, other, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	dspec.Engine.Credentials = other
	// The destination keeps listening for its real source after a refused
	// connection, until IncomingTimeout (or its driver cancels it).
	dspec.Engine.IncomingTimeout = 2 * time.Second
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	t.Logf("source: %v; destination: %v", serr, derr)
	if serr == nil || derr == nil || srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
		t.Fatalf("source %s, destination %s", srep.Status, drep.Status)
	}
	if !errors.Is(serr, transport.ErrUnauthenticated) && !errors.Is(derr, transport.ErrUnauthenticated) {
		t.Errorf("neither side says unauthenticated")
	}
	checkSourceRuns(t, src, dst)
}

// TestEmbedLoadFails: the destination cannot load the state; the source,
// already paused for the switch-over, resumes.
func TestEmbedLoadFails(t *testing.T) {
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
	dst := newVM(t, vmtest.Options{Incoming: true, FailLoad: errors.New("unknown device")})
	sspec, dspec := specs(t, true)
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	t.Logf("source: %v; destination: %v", serr, derr)
	if srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
		t.Fatalf("source %s, destination %s", srep.Status, drep.Status)
	}
	if c := src.Counters(); c.Pauses != 1 || c.Resumes != 1 {
		t.Errorf("source paused %d times, resumed %d times; want once each", c.Pauses, c.Resumes)
	}
	checkSourceRuns(t, src, dst)
}

// TestEmbedCancel: the source's driver cancels during the bulk pass; the
// guest runs on, never paused, and the destination gives up.
func TestEmbedCancel(t *testing.T) {
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sspec.Progress = func(p engine.Progress) {
		if p.Phase == engine.PhaseBulk {
			cancel()
		}
	}
	srep, serr, drep, derr := runCtx(ctx, src, dst, sspec, dspec)
	t.Logf("source: %v; destination: %v", serr, derr)
	if !errors.Is(serr, context.Canceled) || srep.Status != engine.StatusCancelled || drep.Status != engine.StatusFailed {
		t.Fatalf("source %s (%v), destination %s", srep.Status, serr, drep.Status)
	}
	if c := src.Counters(); c.Pauses != 0 {
		t.Errorf("the source paused %d times", c.Pauses)
	}
	checkSourceRuns(t, src, dst)
}

// TestEmbedForgottenWrites: a VMM whose dirty log misses its own writes
// loses a page; the engine's page check (VerifyPages) catches it before
// the destination runs, and the source resumes.
func TestEmbedForgottenWrites(t *testing.T) {
	var src *vmtest.VM
	src = newVM(t, vmtest.Options{ForgetOwnWrites: true, OnSync: func(n int) {
		if n == 2 { // the bulk pass sent page 3: this write is never logged
			if err := src.Write(3 * framework.PageSize); err != nil {
				t.Error(err)
			}
		}
	}})
	dst := newVM(t, vmtest.Options{Incoming: true})
	sspec, dspec := specs(t, false)
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	t.Logf("source: %v; destination: %v", serr, derr)
	if srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
		t.Fatalf("source %s, destination %s: the lost page went unnoticed", srep.Status, drep.Status)
	}
	checkSourceRuns(t, src, dst)
}

// checkSourceRuns: after a failed migration the source runs its intact
// guest, the destination never ran, and no hint window is left open.
func checkSourceRuns(t *testing.T, src, dst *vmtest.VM) {
	t.Helper()
	if src.State() != vmtest.StateRunning || dst.State() == vmtest.StateRunning || dst.Counters().Resumes != 0 {
		t.Errorf("source %s, destination %s (%+v)", src.State(), dst.State(), dst.Counters())
	}
	if src.HintWindowOpen() {
		t.Error("the balloon's hint window is still open: the guest cannot take its pages back")
	}
	if err := src.Verify(); err != nil {
		t.Error(err)
	}
}

// TestEmbedBalloonProviderCrash: a provider that runs a balloon hint
// session in the VMM and dies before it could send DONE (example-crash,
// when "balloon") costs its hints; the guest gets its hinted blocks back
// all the same (Ferry sends DONE when the window ends), on the source of
// a completed migration and of a failed one, whose guest runs on.
func TestEmbedBalloonProviderCrash(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "completed", true: "failed"}[fail], func(t *testing.T) {
			src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond})
			opt := vmtest.Options{Incoming: true}
			if fail {
				opt.FailLoad = errors.New("unknown device")
			}
			dst := newVM(t, opt)
			sspec, dspec := specs(t, false)
			sspec.Hints = []session.Hint{exampleHint(t, "example-crash", map[string]any{"when": "balloon"}, 2*time.Second)}
			sspec.Engine.HintHold = 5 * time.Second // the first pass waits for the provider: it runs its session
			srep, serr, drep, derr := run(src, dst, sspec, dspec)
			t.Logf("source %s (%v), destination %s (%v); hints %+v", srep.Status, serr, drep.Status, derr, srep.Hints)
			if c := src.Counters(); c.HintSessions == 0 {
				t.Fatal("the provider ran no balloon session")
			}
			if h := srep.Hints[0]; h.Status != engine.HintCrashed {
				t.Errorf("provider: %+v", h)
			}
			if fail {
				if srep.Status != engine.StatusFailed {
					t.Fatalf("source %s", srep.Status)
				}
				checkSourceRuns(t, src, dst)
				return
			}
			if serr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
				t.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
			}
			if src.HintWindowOpen() {
				t.Error("the balloon's hint window is still open: the guest cannot take its pages back")
			}
		})
	}
}
