package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveJSONInterrupted: Ctrl-C while migrate -resolve -json waits
// for a side still migrating ends the wait: it prints its one JSON
// object (outcome unresolved, exit 1, error the reason it printed: the
// interrupt) and exits 1, having acted on neither side. Before, the
// signal killed it: stdout held nothing, and it exited by the signal.
func TestResolveJSONInterrupted(t *testing.T) {
	c := newRunCase(t)
	c.src.id, c.dst.id = "a", "a"
	queried := make(chan struct{}, 1)
	c.dst.queried = func(*fakeVMM) { // a look came: migrate listens for signals by then
		select {
		case queried <- struct{}{}:
		default:
		}
	}
	var stdout, stderr strings.Builder
	cmd := exec.Command(plugintest.Path(t, "migrate"), "-resolve", "-json", "-config", c.writeJob(t))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-queried:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("migrate -resolve did not look at the destination within 20 s: %s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(15 * time.Second): // its wait for a side still migrating is 15 s
		cmd.Process.Kill()
		<-done
		t.Fatalf("migrate -resolve still ran 15 s after Ctrl-C: %s", stderr.String())
	}
	t.Logf("%v, calls %s\nstdout %s\nstderr %s", cmd.ProcessState, c.callList(), stdout.String(), stderr.String())
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		t.Fatalf("migrate -resolve -json died of %v: no answer", st.Signal())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	a, _ := decodeOne(t, stdout.String())
	if a.Outcome != outcomeUnresolved || a.Exit != 1 || a.Resolved != "" || len(a.Steps) != 0 {
		t.Errorf("outcome %q, exit %d, resolved %q, steps %+v: want unresolved, 1, none, none", a.Outcome, a.Exit, a.Resolved, a.Steps)
	}
	if a.Source == nil || a.Source.Side != api.SideMigrating || a.Destination == nil || a.Destination.Side != api.SideMigrating {
		t.Errorf("looks %+v, %+v: want both sides migrating", a.Source, a.Destination)
	}
	wantErrorSaid(t, a.Error, stderr.String())
	wantSays(t, a.Error, "interrupted")
	c.wantAsked(t, "", "")
}

// TestResolveInterruptedActsNoFurther: a resolve whose stop is closed
// (migrate -resolve's first signal) sends no act a look asks for and
// waits for no side, and says so (errInterrupted, manual); it ends as
// it would anyway where nothing is left to send but a failing
// destination's last cancel beside a running source (the guest runs on
// the source). A source whose post-copy broke beside a destination
// still in it is not called lost: the destination may yet complete.
func TestResolveInterruptedActsNoFurther(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(c *runCase)
		verdict verdict
		asked   string // of the destination; the source is asked nothing
	}{
		{name: "both handover-unknown", verdict: verdictManual, set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}},
		{name: "both migrating", verdict: verdictManual},
		{name: "running beside migrating", verdict: verdictManual, set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
		}},
		{name: "running beside failing", verdict: verdictSource, asked: "migrate-cancel a", set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.progress = engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverFailed}
		}},
		{name: "post-copy broken beside migrating", verdict: verdictManual, set: func(c *runCase) {
			c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			if tc.set != nil {
				tc.set(c)
			}
			var out strings.Builder
			r := newResolver(fakeJob(c.src, c.dst), &out)
			stop := make(chan struct{})
			close(stop)
			r.stop = stop
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
			if v != tc.verdict {
				t.Errorf("verdict %d, want %d", v, tc.verdict)
			}
			if tc.verdict == verdictManual && !errors.Is(err, errInterrupted) {
				t.Errorf("err %v, want the interrupt", err)
			}
			c.wantAsked(t, "", tc.asked)
		})
	}
}

// TestStartPostcopyJSONInterrupted: Ctrl-C while migrate
// -start-postcopy -json waits for a VMM's answer (here the source's
// migrate-status, which does not come) ends the wait: it prints its one
// JSON object (nothing asked, exit 1, the interrupt in its error, as
// printed) and exits 1. Before, the signal killed it: stdout held
// nothing, and it exited by the signal.
func TestStartPostcopyJSONInterrupted(t *testing.T) {
	c := startPostcopyCase(t)
	looked, hang := make(chan struct{}, 1), make(chan struct{})
	release := sync.OnceFunc(func() { close(hang) })
	t.Cleanup(release) // before the fake VMMs end
	// Its answer hangs (holding the fake's lock): migrate listens for
	// signals by then.
	c.src.looked = func(*fakeVMM) {
		select {
		case looked <- struct{}{}:
		default:
		}
		<-hang
	}
	var stdout, stderr strings.Builder
	cmd := exec.Command(plugintest.Path(t, "migrate"), "-start-postcopy", "-json", "-config", c.writeJob(t))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-looked:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("migrate -start-postcopy did not ask the source within 20 s: %s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(8 * time.Second): // its call's own bound is 10 s
		cmd.Process.Kill()
		<-done
		t.Fatalf("migrate -start-postcopy still ran 8 s after Ctrl-C: %s", stderr.String())
	}
	t.Logf("%v\nstdout %s\nstderr %s", cmd.ProcessState, stdout.String(), stderr.String())
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		t.Fatalf("migrate -start-postcopy -json died of %v: no answer", st.Signal())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	a, _ := decodeOne(t, stdout.String())
	if a.Mode != modeStartPostcopy || a.Exit != 1 || a.Asked || a.Accepted {
		t.Errorf("mode %q, exit %d, asked %v, accepted %v: want start-postcopy, 1, nothing asked", a.Mode, a.Exit, a.Asked, a.Accepted)
	}
	wantErrorSaid(t, a.Error, stderr.String())
	wantSays(t, a.Error, "interrupted")
	release()
	c.wantAsked(t, "", "")
}
