package vmm

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestShutdownRearmsAfterCancel: a first signal during handover-unknown
// defers the shutdown, migrate -resolve resumes the guest here as its
// only copy (the shutdown is cancelled), and the guest is later
// migrated away with post-copy. A second signal then must defer again
// until post-copy ended, and only then stop the VM: the guest runs on
// the destination with pages only this VMM holds. Found by a review:
// cmd/ferry-vmm restored the signals' default action at the first
// signal (signal.NotifyContext), so this second one killed the VMM at
// once and lost the guest.
func TestShutdownRearmsAfterCancel(t *testing.T) {
	v, m1 := liveSource(t, engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePrecopy, Handover: engine.HandoverCommitting})
	logs := make(chan string, 16)
	v.log = slog.New(logTap{c: logs, prefix: "shutdown"})
	if err := m1.Pause(context.Background()); err != nil { // the engine's pause at the switch
		t.Fatal(err)
	}
	rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown, Mode: engine.ModePrecopy}
	v.endMigration(m1.own, v.mig, transport.RoleSend, rep, engine.ErrHandoverUnknown)

	reqs, served := make(chan os.Signal), make(chan os.Signal, 1)
	go func() { served <- v.ServeShutdowns(reqs) }()
	reqs <- syscall.SIGTERM // the first signal
	waitLog(t, logs, served, "shutdown deferred: the handover of this VM is unknown")
	if res, err := v.resolve(context.Background(), v.mig, api.ResolveResume); err != nil || res.Side != api.SideRunning {
		t.Fatalf("resolve resume: side %s, %v", res.Side, err)
	}
	waitLog(t, logs, served, "shutdown cancelled")

	m2 := nextSend(t, v, engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy}, true)
	reqs <- syscall.SIGTERM // the second signal, in post-copy
	waitLog(t, logs, served, "shutdown deferred: the guest runs on the destination in post-copy")
	if st := v.Status().State; st != StatePaused {
		t.Fatalf("VM %s during post-copy, want paused (it serves the destination's pages)", st)
	}
	v.endMigration(m2.own, v.mig, transport.RoleSend, engine.Report{Status: engine.StatusCompleted}, nil)
	select {
	case sig := <-served:
		if sig != nil {
			t.Errorf("ServeShutdowns gave back %v after post-copy ended: the caller would kill the VMM", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("ServeShutdowns still serves after post-copy ended: VM %s", v.Status().State)
	}
	if st := v.Status().State; st != StateStopped {
		t.Errorf("VM %s after the deferred shutdown, want stopped", st)
	}
}

// TestServeShutdownsInsist: a request while a shutdown still waits (the
// operator insists) is given back for the caller to act on, and the VM
// is left as it was (cmd/ferry-vmm then ends the process); once the VM
// stopped, or reqs is closed, ServeShutdowns returns nil.
func TestServeShutdownsInsist(t *testing.T) {
	t.Run("while it waits", func(t *testing.T) {
		v := bareVM(StateHandoverUnknown)
		v.mig = unknownMigration(transport.RoleSend)
		logs := make(chan string, 16)
		v.log = slog.New(logTap{c: logs, prefix: "shutdown"})
		reqs, served := make(chan os.Signal), make(chan os.Signal, 1)
		go func() { served <- v.ServeShutdowns(reqs) }()
		reqs <- syscall.SIGTERM
		waitLog(t, logs, served, "shutdown deferred")
		reqs <- syscall.SIGINT
		if sig := <-served; sig != syscall.SIGINT {
			t.Errorf("ServeShutdowns gave back %v, want the insisting %v", sig, syscall.SIGINT)
		}
		if st := v.Status().State; st != StateHandoverUnknown {
			t.Errorf("VM %s, want %s: it is the caller's to end the process", st, StateHandoverUnknown)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		v := bareVM(StateRunning)
		served := make(chan os.Signal, 1)
		go func() { served <- v.ServeShutdowns(make(chan os.Signal)) }()
		v.finish(3, nil) // the guest powers off
		if sig := <-served; sig != nil {
			t.Errorf("ServeShutdowns gave back %v after the VM stopped", sig)
		}
	})
	t.Run("closed", func(t *testing.T) {
		v := bareVM(StateRunning)
		reqs := make(chan os.Signal)
		close(reqs)
		if sig := v.ServeShutdowns(reqs); sig != nil || v.Status().State != StateRunning {
			t.Errorf("ServeShutdowns of a closed channel: %v, VM %s; want nil, running", sig, v.Status().State)
		}
	})
}

// waitLog waits for the next shutdown message, which must begin with
// prefix, and fails the test if ServeShutdowns returns first.
func waitLog(t *testing.T, logs <-chan string, served <-chan os.Signal, prefix string) {
	t.Helper()
	select {
	case msg := <-logs:
		if !strings.HasPrefix(msg, prefix) {
			t.Fatalf("logged %q, want %q...", msg, prefix)
		}
	case sig := <-served:
		t.Fatalf("ServeShutdowns returned %v while waiting for %q: the caller would end the VMM", sig, prefix)
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q within 5 s", prefix)
	}
}
