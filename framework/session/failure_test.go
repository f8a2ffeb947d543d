package session_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/session"
)

// TestTransportFails: a transport that cannot start or refuses its
// block fails Send and Receive before the VM is touched, with a failed
// report that names the plugin once, and leaves nothing running or open.
func TestTransportFails(t *testing.T) {
	loop := plugin(transportName)
	for _, c := range []struct {
		name   string
		plugin session.Plugin
		want   string
	}{
		{"relative path", session.Plugin{Path: "ferry-transport-loopback"}, "absolute path"},
		{"missing", session.Plugin{Path: "/nonexistent/ferry-transport-x"}, "start transport plugin"},
		{"not a plugin", session.Plugin{Path: "/bin/true"}, "start transport plugin"},
		{"unknown attribute", session.Plugin{Path: loop, Config: map[string]any{"socket": "/tmp/x", "nope": 1}}, "nope"},
		{"missing attribute", session.Plugin{Path: loop}, "socket"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vm := newFakeVM(t)
			spec := session.Spec{Transport: c.plugin, Log: slog.New(newRecords()),
				Hints: []session.Hint{{Name: "balloon", Plugin: session.Plugin{Path: plugin("ferry-hint-balloon")}}}}
			lk := startLeakCheck(t)
			rep, err := session.Send(context.Background(), vm, &balloonHost{}, spec)
			checkFailed(t, "send", rep, err, c.want)
			rep, err = session.Receive(context.Background(), vm, spec)
			checkFailed(t, "receive", rep, err, c.want)
			if vm.paused || vm.resumed != 0 || vm.state != nil {
				t.Error("the VM was touched")
			}
			lk.check(t)
		})
	}
}

func checkFailed(t *testing.T, side string, rep engine.Report, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one saying %q", side, err, want)
	}
	if err != nil && strings.Count(err.Error(), "start transport plugin") > 1 {
		t.Errorf("%s: error %q says where it started more than once", side, err)
	}
	if rep.Status != engine.StatusFailed || err == nil || rep.Error != err.Error() {
		t.Errorf("%s: report %+v, want failed with the error", side, rep)
	}
}

// TestCancelReceive: cancelling a destination that waits for its source
// ends it promptly, cancelled, with the plugin gone and its files closed.
func TestCancelReceive(t *testing.T) {
	_, spec := specs(t, t.TempDir(), slog.New(newRecords()))
	vm := newFakeVM(t)
	lk := startLeakCheck(t)
	s, err := session.Open(context.Background(), vm.RAM(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	rep, err := s.Receive(ctx, vm)
	if !errors.Is(err, context.Canceled) || rep.Status != engine.StatusCancelled {
		t.Errorf("cancelled receive: %v, %+v", err, rep)
	}
	s.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v", d)
	}
	lk.check(t)
}

// TestCancelledBeforeStart: a context already cancelled starts nothing;
// the report says cancelled.
func TestCancelledBeforeStart(t *testing.T) {
	spec, _ := specs(t, t.TempDir(), slog.New(newRecords()))
	vm := newFakeVM(t)
	lk := startLeakCheck(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := session.Send(ctx, vm, nil, spec)
	if !errors.Is(err, context.Canceled) || rep.Status != engine.StatusCancelled {
		t.Errorf("send under a cancelled context: %v, %+v", err, rep)
	}
	lk.check(t)
}

// TestNoHost: without a host, a provider that needs a capability says
// not-supported and the migration completes without its hints.
func TestNoHost(t *testing.T) {
	p := newPair(t, provider("cmma", "ferry-hint-cmma"))
	lk := startLeakCheck(t)
	got := p.receive(t)
	rep, err := session.Send(context.Background(), p.src, nil, p.send)
	r := <-got
	if err != nil || r.err != nil {
		t.Fatalf("send: %v; receive: %v", err, r.err)
	}
	checkHints(t, rep, map[string]string{"cmma": "not-supported: "})
	checkRAM(t, p.src, p.dst, nil)
	lk.check(t)
}

// migrateWithProvider migrates a filled fake VM with one hint provider,
// block name, binary bin among the test plugins, and returns the
// source's report and both VMs; it fails the test if either side failed.
func migrateWithProvider(t *testing.T, name, bin string) (engine.Report, *fakeVM, *fakeVM) {
	t.Helper()
	p := newPair(t, provider(name, bin))
	got := p.receive(t)
	rep, err := session.Send(context.Background(), p.src, nil, p.send)
	r := <-got
	if err != nil || r.err != nil {
		t.Fatalf("send: %v; receive: %v", err, r.err)
	}
	return rep, p.src, p.dst
}

// TestProviderNameMismatch: a provider whose Info.Name is not its Hint's
// name (binary ferry-hint-zr, block "zr", Info.Name "zerorun") is not
// used: the report says failed, at start, naming both names, and the
// migration completes without it.
func TestProviderNameMismatch(t *testing.T) {
	rep, _, _ := migrateWithProvider(t, "zr", "ferry-hint-zr")
	checkHints(t, rep, map[string]string{"zr": "failed: hint provider " + plugin("ferry-hint-zr") +
		`: the provider calls itself "zerorun" (Info.Name), not "zr"`})
	if h := rep.Hints[0]; h.Stage != engine.StageStart || h.Requests != 0 {
		t.Errorf("%+v", h)
	}
}

// TestProviderRefusesItsBlock: a provider whose own checks refuse its
// block is not configured; the report says failed, at start, with its
// reason, and the migration completes without it.
func TestProviderRefusesItsBlock(t *testing.T) {
	rep, src, dst := migrateWithProvider(t, "refuses", "ferry-hint-refuses")
	checkHints(t, rep, map[string]string{"refuses": "failed: max_gpa: must be above min_gpa"})
	if h := rep.Hints[0]; h.Stage != engine.StageStart || h.Meaning != "free" {
		t.Errorf("%+v", h)
	}
	checkRAM(t, src, dst, nil)
}

// TestSessionOnce: a Session runs one migration; Close after Open
// leaves nothing behind.
func TestSessionOnce(t *testing.T) {
	_, spec := specs(t, t.TempDir(), slog.New(newRecords()))
	vm := newFakeVM(t)
	lk := startLeakCheck(t)
	s, err := session.Open(context.Background(), vm.RAM(), spec)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if _, err := s.Receive(context.Background(), vm); err == nil {
		t.Error("Receive after Close ran")
	}
	if _, err := s.Send(context.Background(), vm, hint.Host(nil)); err == nil {
		t.Error("Send after Close ran")
	}
	lk.check(t)
}

// TestSessionRole: Open needs the side it runs (it decides what the
// plugins may do to guest RAM), and a session runs only that side.
func TestSessionRole(t *testing.T) {
	_, spec := specs(t, t.TempDir(), slog.New(newRecords()))
	vm := newFakeVM(t)
	lk := startLeakCheck(t)
	none := spec
	none.Role = 0
	if s, err := session.Open(context.Background(), vm.RAM(), none); err == nil || !strings.Contains(err.Error(), "Spec.Role") {
		t.Errorf("Open without a role: %v, want an error naming Spec.Role", err)
		if s != nil {
			s.Close()
		}
	}
	s, err := session.Open(context.Background(), vm.RAM(), spec)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Send(context.Background(), vm, hint.Host(nil))
	if err == nil || !strings.Contains(err.Error(), "opened to receive") || rep.Status != engine.StatusFailed {
		t.Errorf("Send on a receiving session: %v (%+v), want a failed report saying it receives", err, rep)
	}
	if vm.paused || vm.resumed != 0 {
		t.Error("the VM was touched")
	}
	s.Close()
	lk.check(t)
}
