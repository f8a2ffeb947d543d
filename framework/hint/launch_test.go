package hint_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

func memfd(t *testing.T, name string, size int64, content uint64, at int64) *os.File {
	return plugintest.MemfdWith(t, name, size, binary.LittleEndian.AppendUint64(nil, content), at)
}

// collect runs one Hints call and returns every range.
func collect(t *testing.T, p hint.Provider, gen uint64) ([]hint.Range, error) {
	t.Helper()
	var out []hint.Range
	err := p.Hints(tctx(t), hint.Request{Generation: gen}, func(rs []hint.Range) error {
		out = append(out, rs...)
		return nil
	})
	return out, err
}

// TestLaunchHandsOverFiles checks that the RAM files reach the plugin
// process as fds 3, 4, ... and that VM.Files are matched to them by
// inode, whatever their order and descriptors on the host; the pid and
// host addresses pass through.
func TestLaunchHandsOverFiles(t *testing.T) {
	a := memfd(t, "ram-a", 1<<20, 0xaaaa, 0)
	b := memfd(t, "ram-b", 2<<20, 0xbbbb, 1<<20)
	p := launch(t, "ferry-hint-files", []*os.File{a, b})

	// The host passes different *os.File values (dups) in the opposite
	// order.
	vm := hint.VM{PID: 777, Files: []*os.File{plugintest.Dup(t, b), plugintest.Dup(t, a)}, RAM: []hint.Region{
		{GPA: 0, Size: 1 << 20, HostAddr: 0x7000_0000, File: 1, Offset: 0},             // a
		{GPA: 1 << 30, Size: 1 << 20, HostAddr: 0x8000_0000, File: 0, Offset: 1 << 20}, // b
	}}
	ctx := tctx(t)
	if err := p.Configure(ctx, nil, vm, nil); err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, p, 1)
	want := []hint.Range{{First: 3, Count: 0xaaaa}, {First: 4, Count: 0xbbbb}, {First: 0x7000_0000, Count: 777}}
	if err != nil || !equalRanges(got, want) {
		t.Errorf("the plugin saw %x (%v), want %x", got, err, want)
	}

	// A file the plugin never received is refused before any RPC.
	other := memfd(t, "ram-other", 1<<20, 1, 0)
	err = p.Configure(ctx, nil, hint.VM{RAM: []hint.Region{{Size: 1 << 20}}, Files: []*os.File{other}}, nil)
	if !errors.Is(err, hint.ErrBadConfig) || !strings.Contains(err.Error(), "Launch") {
		t.Errorf("Configure with a file not handed over = %v; want ErrBadConfig naming Launch", err)
	}
	// Without Files, indices are launch indices.
	if err := p.Configure(ctx, nil, hint.VM{RAM: []hint.Region{{Size: 1 << 20, File: 1, Offset: 1 << 20}}}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := collect(t, p, 2); err != nil || len(got) != 2 || got[0] != (hint.Range{First: 4, Count: 0xbbbb}) {
		t.Errorf("by launch index: %x, %v", got, err)
	}
}

func equalRanges(a, b []hint.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPluginGone: a plugin that dies in the middle of Hints ends the
// call with ErrPluginGone after what it sent; every later call fails
// with ErrPluginGone, fast; Kill is still fine.
func TestPluginGone(t *testing.T) {
	ack := filepath.Join(t.TempDir(), "ack")
	t.Setenv(crashAckEnv, ack)
	p := launch(t, "ferry-hint-crash", nil)
	ctx := tctx(t)
	if err := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{}); err != nil {
		t.Fatal(err)
	}
	var got []hint.Range
	err := p.Hints(ctx, hint.Request{Generation: 1}, func(rs []hint.Range) error {
		got = append(got, rs...)
		return os.WriteFile(ack, nil, 0o600) // the provider may exit now
	})
	if !errors.Is(err, hint.ErrPluginGone) || len(got) != 1 {
		t.Errorf("Hints that kills the plugin = %v, %v; want the one range, then ErrPluginGone", got, err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done not closed 5s after the plugin died")
	}
	start := time.Now()
	if _, err := p.Info(ctx); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Info after the crash = %v; want ErrPluginGone", err)
	}
	if err := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{}); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Configure after the crash = %v; want ErrPluginGone", err)
	}
	if _, err := collect(t, p, 2); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Hints after the crash = %v; want ErrPluginGone", err)
	}
	if err := p.Close(ctx, true); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Close after the crash = %v; want ErrPluginGone", err)
	}
	if d := time.Since(start); d > 3*time.Second { // at once: room for a loaded machine, none for a call that waits
		t.Errorf("calls after the crash took %v", d)
	}
	p.Kill()
}

// TestKill: Kill ends a plugin whose Hints never returns, promptly; the
// call in flight and every later one fail with ErrPluginGone; Kill is
// idempotent.
func TestKill(t *testing.T) {
	note := filepath.Join(t.TempDir(), "in-hints")
	t.Setenv(hangNoteEnv, note)
	p := launch(t, "ferry-hint-hang", nil)
	ctx := tctx(t)
	if err := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{}); err != nil {
		t.Fatal(err)
	}
	// In flight with no deadline: the plugin side waits for it, and
	// refuses no later call (its context never ends).
	inFlight := make(chan error, 1)
	go func() { inFlight <- p.Hints(ctx, hint.Request{Generation: 1}, nil) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(note); err == nil {
			break // the plugin runs it
		}
		if time.Now().After(deadline) {
			t.Fatal("the hanging plugin did not begin the first Hints call within 10 s")
		}
	}
	// The deadline holds even though the plugin is stuck (which it is
	// until Kill: the bound has room for a loaded machine).
	start := time.Now()
	err := p.Hints(ctx, hint.Request{Generation: 2, Deadline: start.Add(200 * time.Millisecond)}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("Hints of a hanging plugin = %v after %v; want DeadlineExceeded at 200ms", err, time.Since(start))
	}
	start = time.Now()
	p.Kill()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Kill took %v", d)
	}
	select {
	case err := <-inFlight:
		if !errors.Is(err, hint.ErrPluginGone) {
			t.Errorf("Hints in flight during Kill = %v; want ErrPluginGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hints in flight still running 5s after Kill")
	}
	if _, err := p.Info(ctx); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Info after Kill = %v; want ErrPluginGone", err)
	}
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Kill")
	}
}

// TestHintsRacingKill: a Hints whose look at whether the process lives
// passed just before Kill, and whose stream is opened once Kill
// returned, fails with ErrPluginGone, as one in flight during Kill
// does (TestKill), not with an error of no class: plugproc fails a
// stream opened after Kill with code Canceled, as gRPC's closed
// ClientConn does, which the provider's errclass takes for the plugin
// gone.
func TestHintsRacingKill(t *testing.T) {
	p := launch(t, "ferry-hint-zero", nil)
	ctx := tctx(t)
	if err := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{}); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := hint.HintsPastAlive(ctx, p); !errors.Is(err, hint.ErrPluginGone) {
		t.Errorf("Hints whose stream opened after Kill = %v; want ErrPluginGone", err)
	}
}

// TestProviderLogsOnce: a provider's logs reach the host's logger with
// their level, and a provider whose capability is missing says so once
// while it keeps answering without hints.
func TestProviderLogsOnce(t *testing.T) {
	sink := plugintest.NewLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, plugintest.Path(t, "ferry-hint-balloon"), nil, sink.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Configure(ctx, nil, hint.VM{}, &hint.MockHost{}); err != nil {
		t.Fatal(err)
	}
	for gen := uint64(1); gen <= 3; gen++ {
		if got, err := collect(t, p, gen); err != nil || len(got) > 0 {
			t.Errorf("generation %d without a balloon: %v, %v; want nothing, no error", gen, got, err)
		}
	}
	p.Close(ctx, true)
	var n int
	for _, line := range strings.Split(sink.String(), "\n") {
		if strings.Contains(line, "[WARN]") && strings.Contains(line, "no balloon free page hinting") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the provider said %d times that the VM has no balloon, want once:\n%s", n, sink.String())
	}
}

// TestLaunchNoLeak: Launch, a hint window with a Host and Kill leave no
// goroutines and no child processes behind.
func TestLaunchNoLeak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var done atomic.Int32
	run := func() {
		p, err := hint.Launch(ctx, plugintest.Path(t, "ferry-hint-balloon"), nil, plugintest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Configure(ctx, nil, hint.VM{}, fakeBalloon(&done)); err != nil {
			t.Fatal(err)
		}
		if _, err := collect(t, p, 1); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(ctx, true); err != nil {
			t.Fatal(err)
		}
		p.Kill()
	}
	plugintest.NoLeaks(t, run)
	if done.Load() != 4 {
		t.Errorf("BalloonDone reached the VMM %d times in 4 windows", done.Load())
	}
}

// TestKillClosesHostFiles: once Kill returned, none of the host's
// descriptors for a plugin is open, those of the Host its hint window
// served (the broker listener and the connection the plugin dialed to
// it, which the plugin still held) included, whether Kill ended the
// plugin or it had died first. plugproc's TestKillClosesFiles covers
// the host's connection to the plugin; this one the host's server side,
// whose gRPC Stop returns only once each connection's reader (which
// closes it) has ended.
func TestKillClosesHostFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes")
	}
	ctx := tctx(t)
	run := func(dies bool) {
		p := launch(t, "ferry-hint-balloon", nil)
		if err := p.Configure(ctx, nil, hint.VM{}, fakeBalloon(nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := collect(t, p, 1); err != nil { // a balloon session over the Host
			t.Fatal(err)
		}
		if dies {
			kids, err := plugintest.ChildPIDs()
			if err != nil || len(kids) != 1 {
				t.Fatalf("child processes %v (%v), want the plugin's alone", kids, err)
			}
			pid, _ := strconv.Atoi(kids[0])
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-p.Done()
		}
		p.Kill()
	}
	run(false) // gRPC's and go-plugin's process-wide files, opened once
	for i := range 6 {
		before := openFiles(t)
		run(i%2 == 1)
		for fd, what := range openFiles(t) {
			if before[fd] != what {
				t.Errorf("run %d: fd %s (%s) open after Kill", i, fd, what)
			}
		}
	}
}

// openFiles is this process's open files: fd number to what it is.
func openFiles(t *testing.T) map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		out[e.Name()], _ = os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
	}
	return out
}

// TestLaunchFails: a context that ends during the start kills the plugin
// and says so; a missing binary is named; a transport plugin is refused.
func TestLaunchFails(t *testing.T) {
	plugintest.LaunchFails(t, plugintest.Path(t, "ferry-hint-zero"), func(ctx context.Context, path string) error {
		_, err := hint.Launch(ctx, path, nil, plugintest.Logger(t))
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, err := hint.Launch(ctx, plugintest.Path(t, transportName), nil, plugintest.Logger(t)); err == nil {
		p.Kill()
		t.Error("a transport plugin was accepted as a hint provider")
	}
	if kids, err := plugintest.ChildPIDs(); err != nil || len(kids) > 0 {
		t.Errorf("child processes left: %v (%v)", kids, err)
	}
}
