package transport_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

func memfd(t *testing.T, name string, size int64, content string, at int64) *os.File {
	return plugintest.MemfdWith(t, name, size, []byte(content), at)
}

// TestLaunchHandsOverFiles checks that the RAM files reach the plugin
// process as fds 3, 4, ... and that OpenRequest.Files are matched to
// them by inode, whatever their order and descriptors on the host.
func TestLaunchHandsOverFiles(t *testing.T) {
	a := memfd(t, "ram-a", 1<<20, "region-in-file-a", 0)
	b := memfd(t, "ram-b", 2<<20, "region-in-file-b", 1<<20)
	tr := launch(t, "ferry-transport-files", []*os.File{a, b})

	// The host passes different *os.File values (dups, as engine.RAMFiles
	// makes) in the opposite order.
	dupB, dupA := plugintest.Dup(t, b), plugintest.Dup(t, a)
	ram := []transport.RAMRegion{
		{GPA: 0, Size: 1 << 20, File: 1, Offset: 0},             // a
		{GPA: 1 << 30, Size: 1 << 20, File: 0, Offset: 1 << 20}, // b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, RAM: ram, Files: []*os.File{dupB, dupA}}); err != nil {
		t.Fatal(err)
	}
	m, err := tr.RecvMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "fd3:region-in-file-a;fd4:region-in-file-b;"; string(m.Payload) != want {
		t.Errorf("plugin saw %q, want %q", m.Payload, want)
	}

	// A file the plugin never received is refused before any RPC.
	other := memfd(t, "ram-other", 1<<20, "x", 0)
	err = tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend,
		RAM: []transport.RAMRegion{{Size: 1 << 20}}, Files: []*os.File{other}})
	if !errors.Is(err, transport.ErrBadConfig) || !strings.Contains(err.Error(), "Launch") {
		t.Errorf("Open with a file not handed over = %v; want ErrBadConfig naming Launch", err)
	}
	// Without Files, indices are launch indices.
	byIndex := []transport.RAMRegion{{GPA: 0, Size: 1 << 20, File: 1, Offset: 1 << 20}} // b
	if err := tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, RAM: byIndex}); err != nil {
		t.Fatal(err)
	}
	if m, err := tr.RecvMessage(ctx); err != nil || string(m.Payload) != "fd4:region-in-file-b;" {
		t.Errorf("RecvMessage = %q, %v", m.Payload, err)
	}
}

// TestPluginGone: once the plugin process dies, every call fails with
// ErrPluginGone, fast; Close then Info starts a fresh process.
func TestPluginGone(t *testing.T) {
	tr := launch(t, "ferry-transport-crash", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tr.Info(ctx); err != nil {
		t.Fatal(err)
	}
	// A RecvMessage in flight when the process dies ends too.
	recvErr := make(chan error, 1)
	go func() {
		_, err := tr.RecvMessage(ctx)
		recvErr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := tr.Flush(ctx); !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("Flush that kills the plugin = %v; want ErrPluginGone", err)
	}
	if err := <-recvErr; !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("RecvMessage in flight = %v; want ErrPluginGone", err)
	}
	start := time.Now()
	if _, err := tr.Info(ctx); !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("Info after the crash = %v; want ErrPluginGone", err)
	}
	if err := tr.SendMessage(ctx, transport.Message{Kind: 1}); !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("SendMessage after the crash = %v; want ErrPluginGone", err)
	}
	if _, err := tr.Stats(ctx); !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("Stats after the crash = %v; want ErrPluginGone", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("calls after the crash took %v", d)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close after the crash: %v", err)
	}
	if err := tr.Flush(ctx); !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("Flush after Close = %v; want ErrPluginGone", err)
	}
	if info, err := tr.Info(ctx); err != nil || info.Name != "crash" {
		t.Errorf("Info after Close (a fresh process) = %+v, %v", info, err)
	}
}

// TestLaunchNoLeak: Launch and Close leave no goroutines and no child
// processes behind.
func TestLaunchNoLeak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func() {
		tr, err := transport.Launch(ctx, plugintest.Path(t, "ferry-transport-loopback"), nil, plugintest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Schema(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	plugintest.NoLeaks(t, run)

}

// TestLaunchCancelled: a context that ends during the start kills the
// plugin and says so.
func TestLaunchCancelled(t *testing.T) {
	plugintest.LaunchFails(t, plugintest.Path(t, "ferry-transport-loopback"), func(ctx context.Context, path string) error {
		_, err := transport.Launch(ctx, path, nil, plugintest.Logger(t))
		return err
	})
}

// TestCloseStopped: Close of a plugin whose process stopped (SIGSTOP:
// it answers nothing) kills it at once, without asking it for its last
// Stats and to close its session first; Stats then reports the last
// counters seen. Until 2026-12-06 Close waited closeTimeout (5 s) for
// those answers and killGrace (4 s) for an exit the process could not
// make.
func TestCloseStopped(t *testing.T) {
	const name = "ferry-transport-loopback"
	tr := launch(t, name, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tr.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	pids, err := plugintest.ChildPIDs()
	if err != nil || len(pids) != 1 {
		t.Fatalf("plugin processes %v (%v); want one", pids, err)
	}
	if n := plugintest.SignalChildren(t, name, syscall.SIGSTOP); n != 1 {
		t.Fatalf("SIGSTOP reached %d plugin processes; want 1", n)
	}
	t.Cleanup(func() { plugintest.SignalChildren(t, name, syscall.SIGCONT) })
	waitState(t, pids[0], "T")
	start := time.Now()
	if err := tr.Close(); err != nil {
		t.Errorf("Close of a stopped plugin: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close of a stopped plugin took %v: it waited on a process that answers nothing", took)
	}
	if _, err := os.Stat("/proc/" + pids[0]); err == nil {
		t.Errorf("the stopped plugin (pid %s) is still there after Close", pids[0])
	}
	// The last counters seen, and an error saying they are only that
	// (before 2026-12-07 no error: a caller could not tell them from
	// the session's totals).
	if _, err := tr.Stats(ctx); !errors.Is(err, transport.ErrPluginGone) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Stats after Close: %v; want the last counters seen, with ErrPluginGone saying the process was stopped", err)
	}
}

// countOpen opens tr (a ferry-transport-count plugin) and sends it n
// bytes to count.
func countOpen(t *testing.T, ctx context.Context, tr transport.Transport, n int) {
	t.Helper()
	if err := tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend}); err != nil {
		t.Fatal(err)
	}
	if err := tr.SendMessage(ctx, transport.Message{Kind: 3, Payload: make([]byte, n)}); err != nil {
		t.Fatal(err)
	}
}

// TestStatsOfItsOwnProcess: after Close, Stats reports the session of
// the process just closed, never an earlier one's. A post-copy
// reconnect closes the session (the engine counts its totals then) and
// opens the next in a new process; closed before it answered a Stats
// call (here it died), that process's Stats after Close reported the
// session before it again, without an error, and the engine counted
// those bytes twice (sender.closeTransport).
func TestStatsOfItsOwnProcess(t *testing.T) {
	tr := launch(t, "ferry-transport-count", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	countOpen(t, ctx, tr, 1000)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := tr.Stats(ctx); err != nil || st.BytesWire != 1000 {
		t.Fatalf("Stats after the first Close = %+v, %v; want its 1000 bytes", st, err)
	}
	countOpen(t, ctx, tr, 10) // a new process
	_ = tr.SendMessage(ctx, transport.Message{Kind: countExit})
	if err := tr.Close(); err != nil {
		t.Errorf("Close of a process that exited: %v", err)
	}
	st, err := tr.Stats(ctx)
	if st.BytesWire == 1000 {
		t.Errorf("Stats after the second Close = %+v, %v: the first process's session again", st, err)
	}
	if !errors.Is(err, transport.ErrPluginGone) {
		t.Errorf("Stats after Close of a process that died = %+v, %v; want ErrPluginGone (its totals were not taken)", st, err)
	}
	// A process started anew counts from zero, and its own totals
	// after Close come without an error.
	countOpen(t, ctx, tr, 7)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := tr.Stats(ctx); err != nil || st.BytesWire != 7 {
		t.Errorf("Stats after the third Close = %+v, %v; want 7 bytes", st, err)
	}
}

// TestStatsAfterCloseCountTheClose: Stats after Close (and after
// CloseHoldingListeners) are the closed session's totals, what its
// Close itself finished too (a receiving transport's close joins the
// goroutines writing pages in flight, as tcp's does). A destination
// refusing a stranger's session checks exactly those counts for a page
// written into guest RAM (engine receiver.waitAgain). Until 2026-12-07
// the launched transport asked the plugin's Stats before its Close and
// kept them: a page that landed during the Close was not counted.
func TestStatsAfterCloseCountTheClose(t *testing.T) {
	tr := launch(t, "ferry-transport-count", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name  string
		close func() error
	}{
		{"Close", tr.Close},
		{"CloseHoldingListeners", tr.(transport.ListenerHolder).CloseHoldingListeners},
	} {
		countOpen(t, ctx, tr, 1000)
		if err := tr.SendMessage(ctx, transport.Message{Kind: countClose, Payload: make([]byte, 24)}); err != nil {
			t.Fatal(err)
		}
		if err := c.close(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if st, err := tr.Stats(ctx); err != nil || st.BytesWire != 1024 || st.PagesData != 1 {
			t.Errorf("Stats after %s = %+v, %v; want 1024 bytes and the page its close wrote", c.name, st, err)
		}
	}
}

// TestCloseHung: a plugin that hangs without stopping (its Stats and
// Close block for ever: a deadlock) and left a Stats call unanswered
// for hungAfter is killed at once by Close, not asked again; Stats then
// reports the last counters seen and says so. Before, Close waited
// closeTimeout (5 s) for its last Stats and Close, then go-plugin's
// request to exit.
func TestCloseHung(t *testing.T) {
	const name = "ferry-transport-count"
	tr := launch(t, name, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	countOpen(t, ctx, tr, 1000)
	if st, err := tr.Stats(ctx); err != nil || st.BytesWire != 1000 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	pids, err := plugintest.ChildPIDs()
	if err != nil || len(pids) != 1 {
		t.Fatalf("plugin processes %v (%v); want one", pids, err)
	}
	if err := tr.SendMessage(ctx, transport.Message{Kind: countHang}); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 2500*time.Millisecond) // past hungAfter
	_, err = tr.Stats(sctx)
	scancel()
	if err == nil {
		t.Fatal("Stats of the hung plugin answered")
	}
	start := time.Now()
	if err := tr.Close(); err != nil {
		t.Errorf("Close of a hung plugin: %v", err)
	}
	took := time.Since(start)
	t.Logf("Close of the hung plugin took %v", took)
	if took > 2*time.Second {
		t.Errorf("Close of a hung plugin took %v: it asked a plugin that had not answered", took)
	}
	if _, err := os.Stat("/proc/" + pids[0]); err == nil {
		t.Errorf("the hung plugin (pid %s) is still there after Close", pids[0])
	}
	st, err := tr.Stats(ctx)
	if st.BytesWire != 1000 || !errors.Is(err, transport.ErrPluginGone) || !strings.Contains(err.Error(), "answered nothing") {
		t.Errorf("Stats after Close = %+v, %v; want the last 1000 bytes seen, with ErrPluginGone saying it answered nothing", st, err)
	}
}

// waitState waits until procfs gives pid the state state (a signal is
// delivered asynchronously).
func waitState(t *testing.T, pid, state string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %s not in state %s after 10 s", pid, state)
		}
	}
}
