package vmm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

// stuckDestination is a post-copy destination, served on a control
// socket (call), whose guest runs here (the engine's Resume at COMMIT)
// and whose one vCPU loop never returns, as one waiting inside KVM_RUN
// on a page this destination lacks once the engine keeps the
// userfaultfd open: its Halt fails, after haltBound. Guest RAM is a
// memfd; the Toucher stands in for the engine's. told ends when the VMM
// cuts the engine's telling of the source (linger.go). Its migration
// is "pc", reporting no tag fingerprint (stuckDestinationAs).
func stuckDestination(t *testing.T) (v *VM, m migrationVM, call func(cmd string, args, res any) error, told context.Context) {
	t.Helper()
	return stuckDestinationAs(t, "pc", "")
}

// stuckDestinationAs is stuckDestination whose migration has id ("":
// none, as one started by hand) and reports tag fingerprint tag from
// its post-copy progress on (endNotHalted's report carries it too).
func stuckDestinationAs(t *testing.T, id, tag string) (v *VM, m migrationVM, call func(cmd string, args, res any) error, told context.Context) {
	t.Helper()
	v = fakeWithRAM(t, StateIncoming)
	v.ram = &guestRAM{Guest: v.mem}
	v.cpus = []*vcpu.VCPU{{}} // started; cpusDone never closes
	v.haltBound = 50 * time.Millisecond
	call = serveCalls(t, v)
	own, err := v.claim(t.Context(), v.migrations(), transport.RoleReceive.String(), id,
		func() (bool, bool) { return false, true }, // engine.Cancel refuses: post-copy held
		func(st State) error { return v.canMigrate(transport.RoleReceive, st) })
	if err != nil {
		t.Fatal(err)
	}
	told, cut := context.WithCancel(context.Background())
	t.Cleanup(cut)
	own.linger.setEnd(cut)
	m = migrationVM{v: v, own: own}
	v.setStateIf(StateIncoming, StatePaused) // what LoadState does
	m.Postcopy(&recordingToucher{host: v.mem.Host()})
	if err := m.Resume(); err != nil { // COMMIT
		t.Fatal(err)
	}
	v.migration().progress(engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy,
		TagFingerprint: tag})
	return v, m, call, told
}

// endNotHalted ends m's migration as the engine's Receive does once
// post-copy broke and Halt failed with herr: its error wraps
// ErrPostcopyBroken, ErrNotHalted and the cause post-copy broke on
// (pcRecv.broken), and says herr without wrapping it (pcRecv.halt, since
// f0f4e1b: what a VMM's Halt error wraps must not decide the status);
// its report carries the tag fingerprint the migration's progress
// reported.
func endNotHalted(v *VM, m migrationVM, herr error) {
	cause := errors.New("no source reconnected within reconnect_timeout")
	err := fmt.Errorf("%w: %w (Halt: %v): end this destination VMM's process now; post-copy broke: %w",
		engine.ErrPostcopyBroken, engine.ErrNotHalted, herr, cause)
	rep := engine.Report{Status: engine.StatusPostcopyBroken, Handover: engine.HandoverPostcopyBroken, Error: err.Error(),
		TagFingerprint: v.migration().status().TagFingerprint}
	v.endMigration(m.own, v.migration(), transport.RoleReceive, rep, err)
}

type runResult struct {
	code int
	err  error
}

// TestHaltFailedStaysThenEnds: a post-copy destination whose Halt fails
// (a vCPU never leaves its wait) keeps the Toucher (the VMM never takes
// it back), cuts the engine's telling of the source, and stays, its
// guest frozen: migrate-status says postcopy-broken with the engine's
// error, status says not_halted. Run returns, code 1 and an error saying
// the VM could not be halted, once asked (quit, the shutdown, a Stop or
// a Close that came before the failure) without waiting for that vCPU,
// and Close returns without releasing guest RAM (a thread still waits
// in a fault on it). Before, Run and Close waited for the vCPU for
// good: quit and the shutdown did not end the VMM, and Close never
// returned.
func TestHaltFailedStaysThenEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(v *VM, closed chan<- error) // before the Halt: the request came during post-copy
		end    func(cancelRun context.CancelFunc, call func(cmd string, args, res any) error) error
	}{
		{name: "quit", end: func(_ context.CancelFunc, call func(string, any, any) error) error {
			return call("quit", api.IDArgs{ID: "pc"}, nil)
		}},
		{name: "shutdown", end: func(cancelRun context.CancelFunc, _ func(string, any, any) error) error {
			cancelRun() // Run's ctx: one shutdown request
			return nil
		}},
		{name: "stopped before", before: func(v *VM, _ chan<- error) { v.Stop() }},
		{name: "closed before", before: func(v *VM, closed chan<- error) { go func() { closed <- v.Close() }() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, m, call, told := stuckDestination(t)
			runCtx, cancelRun := context.WithCancel(context.Background())
			defer cancelRun()
			ran := make(chan runResult, 1)
			go func() {
				code, err := v.Run(runCtx)
				ran <- runResult{code, err}
			}()
			closed := make(chan error, 1)
			if tc.before != nil {
				tc.before(v, closed)
			}
			herr := m.Halt()
			if herr == nil {
				t.Fatal("Halt succeeded with a vCPU that never returns")
			}
			select {
			case <-told.Done():
			default:
				t.Error("the engine's telling of the source was not cut after the failed Halt")
			}
			if v.ram.toucher.Load() == nil {
				t.Error("the Toucher was taken back: a device would reach a missing page as a hole")
			}
			endNotHalted(v, m, herr)

			var st api.Migration
			if err := call("migrate-status", nil, &st); err != nil {
				t.Fatal(err)
			}
			if !st.Done || st.Side != api.SidePostcopyBroken || st.Report == nil ||
				!strings.Contains(st.Report.Error, engine.ErrNotHalted.Error()) {
				t.Errorf("migrate-status %+v: want done, postcopy-broken, the engine's error saying the VM could not be halted", st)
			}
			var status map[string]any
			if err := call("status", nil, &status); err != nil {
				t.Fatal(err)
			}
			if status["state"] != string(StateStopped) || status["not_halted"] != true {
				t.Errorf("status %v: want stopped, not_halted", status)
			}
			if tc.end != nil {
				select {
				case r := <-ran:
					t.Fatalf("Run returned (%d, %v) before anybody asked: the VMM stays, answering, until quit", r.code, r.err)
				default:
				}
				if err := tc.end(cancelRun, call); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
			}
			select {
			case r := <-ran:
				if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "could not be halted") {
					t.Errorf("Run: %d, %v; want 1, the VM could not be halted", r.code, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: Run had not returned 10 s later: it waits for a vCPU that never returns", tc.name)
			}

			if tc.name != "closed before" {
				go func() { closed <- v.Close() }()
			}
			select {
			case err := <-closed:
				if err == nil || !strings.Contains(err.Error(), "left to this process's exit") {
					t.Errorf("Close: %v; want an error saying guest RAM is left to the process's exit", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close had not returned 10 s later: it waits for a vCPU that never returns")
			}
			if _, err := unix.FcntlInt(uintptr(v.mem.Fd()), unix.F_GETFD, 0); err != nil {
				t.Errorf("guest RAM's memfd after Close: %v; want it left open for the vCPU that waits on it", err)
			}
		})
	}
}
