package session_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
)

// ramSession is a session opened on some RAM with an in-process
// transport that has no peer: its Open only counts (the engine opens it
// first thing, so opens is 0 if the engine never ran) and fails. A
// sending one also starts the "noted" provider, whose Configure leaves
// the file configured.
type ramSession struct {
	s          *session.Session
	opens      atomic.Int32
	configured string
}

var errNoPeer = errors.New("test transport: no peer")

func openRAM(t *testing.T, role transport.Role, ram framework.Layout) *ramSession {
	t.Helper()
	rs := &ramSession{configured: filepath.Join(t.TempDir(), "configured")}
	t.Setenv("FERRY_TEST_CONFIGURED", rs.configured)
	tr := &transport.Mock{
		SchemaFunc: func(context.Context) (schema.Schema, error) { return nil, nil },
		OpenFunc:   func(context.Context, transport.OpenRequest) error { rs.opens.Add(1); return errNoPeer },
		CloseFunc:  func() error { return nil },
	}
	spec := session.Spec{Role: role, TransportInProcess: tr, Log: slog.New(newRecords())}
	if role == transport.RoleSend {
		spec.Hints = []session.Hint{provider("noted", "ferry-hint-noted")}
	}
	s, err := session.Open(context.Background(), ram, spec)
	if err != nil {
		t.Fatal(err)
	}
	rs.s = s
	return rs
}

// run runs the session's side on vm, then Close.
func (rs *ramSession) run(role transport.Role, vm *fakeVM) (engine.Report, error) {
	defer rs.s.Close()
	if role == transport.RoleSend {
		return rs.s.Send(context.Background(), vm, nil)
	}
	return rs.s.Receive(context.Background(), vm)
}

// wasConfigured: the provider's Configure ran.
func (rs *ramSession) wasConfigured() bool {
	_, err := os.Stat(rs.configured)
	return err == nil
}

var roles = []transport.Role{transport.RoleSend, transport.RoleReceive}

// TestAnotherRAMRefused: Session.Send and Session.Receive refuse a VM
// whose RAM is not the layout given to Open (another memfd of the same
// size, a region with another offset, size or GPA, fewer regions), with
// a failed report and an error naming the region and both values,
// before anything runs: the transport is never opened, no provider is
// configured, the VM is not touched, and nothing is left behind. Before,
// nothing was checked: the engine ran on the VM's layout while the
// plugins held Open's files.
func TestAnotherRAMRefused(t *testing.T) {
	vm, other := newFakeVM(t), newFakeVM(t)
	good := vm.RAM()
	changed := func(f func(framework.Layout)) framework.Layout {
		l := slices.Clone(good)
		f(l)
		return l
	}
	for _, c := range []struct {
		name   string
		layout framework.Layout
		mem    []byte
		want   string
	}{
		{"another memfd", other.RAM(), other.mem, "RAM region 0: fd "},
		{"another offset", changed(func(l framework.Layout) { l[1].Offset = 0 }), vm.mem, "RAM region 1: offset 0x0, Open's 0x40000"},
		{"another size", changed(func(l framework.Layout) { l[1].Size = 16 * page }), vm.mem, "RAM region 1: size 0x10000, Open's 0x20000"},
		{"another GPA", changed(func(l framework.Layout) { l[1].GPA = 2 << 20 }), vm.mem, "RAM region 1: GPA 0x200000, Open's 0x100000"},
		{"fewer regions", good[:1], vm.mem, "1 RAM regions, Open's layout has 2"},
	} {
		for _, role := range roles {
			t.Run(c.name+"/"+role.String(), func(t *testing.T) {
				bad := &fakeVM{fd: vm.fd, mem: c.mem, layout: c.layout}
				checkAnotherRAM(t, role, good, bad, c.want)
			})
		}
	}
}

// TestReusedFdRefused: Open was given RAM at descriptor n; the VMM
// closed n and another memfd took its number: Send and Receive refuse
// that VM although its layout is Open's value for value, since the file
// behind n is another (device and inode).
func TestReusedFdRefused(t *testing.T) {
	vm, other := newFakeVM(t), newFakeVM(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			n, err := unix.Dup(vm.fd)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(n)
			ram := framework.Layout{{GPA: 0, Size: 64 * page, Fd: n}, {GPA: 1 << 20, Size: 32 * page, Fd: n, Offset: 64 * page}}
			lk := startLeakCheck(t)
			rs := openRAM(t, role, ram)
			if err := unix.Dup3(other.fd, n, unix.O_CLOEXEC); err != nil { // n now names the other memfd
				t.Fatal(err)
			}
			reused := &fakeVM{fd: n, mem: other.mem, layout: ram}
			rep, err := rs.run(role, reused)
			rs.checkRefused(t, rep, err, "RAM region 0: fd ")
			checkUntouched(t, reused)
			lk.check(t)
		})
	}
}

// TestDupRAMAccepted: a VM whose regions name a duplicate of Open's
// descriptor is the same RAM: Send configures its provider and both
// sides' engines run (and open the transport, which has no peer).
func TestDupRAMAccepted(t *testing.T) {
	vm := newFakeVM(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			dup, err := unix.Dup(vm.fd)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(dup)
			same := &fakeVM{fd: dup, mem: vm.mem, layout: slices.Clone(vm.RAM())}
			for i := range same.layout {
				same.layout[i].Fd = dup
			}
			lk := startLeakCheck(t)
			rs := openRAM(t, role, vm.RAM())
			rep, err := rs.run(role, same)
			if !errors.Is(err, errNoPeer) || rep.Status != engine.StatusFailed {
				t.Errorf("%v: %v (%+v), want the engine to have run and failed to open the transport", role, err, rep)
			}
			if n := rs.opens.Load(); n != 1 {
				t.Errorf("the transport was opened %d times, want 1", n)
			}
			if role == transport.RoleSend && !rs.wasConfigured() {
				t.Error("the provider was not configured")
			}
			lk.check(t)
		})
	}
}

// checkAnotherRAM opens a session on ram and wants vm, whose RAM is
// another, refused with an error saying want.
func checkAnotherRAM(t *testing.T, role transport.Role, ram framework.Layout, vm *fakeVM, want string) {
	t.Helper()
	lk := startLeakCheck(t)
	rs := openRAM(t, role, ram)
	rep, err := rs.run(role, vm)
	rs.checkRefused(t, rep, err, want)
	checkUntouched(t, vm)
	lk.check(t)
}

// checkRefused wants a failed report and an error saying the VM is not
// Open's and want, from a session whose transport was never opened and
// whose provider was never configured (Close has returned).
func (rs *ramSession) checkRefused(t *testing.T, rep engine.Report, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "not the one whose RAM was given to Open") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want the VM refused: %q", err, want)
	}
	if rep.Status != engine.StatusFailed || err == nil || rep.Error != err.Error() {
		t.Errorf("report %+v, want failed with the error", rep)
	}
	if n := rs.opens.Load(); n != 0 {
		t.Errorf("the transport was opened %d times for a VM whose RAM is not Open's", n)
	}
	if rs.wasConfigured() {
		t.Error("a provider was configured with a VM whose RAM is not Open's")
	}
}

func checkUntouched(t *testing.T, vm *fakeVM) {
	t.Helper()
	if vm.paused || vm.resumed != 0 || vm.state != nil {
		t.Error("the VM was touched")
	}
}

// gatedVM is a fakeVM whose RAM, once called, waits until release is
// closed (or a minute): the caller is then past Session.use.
type gatedVM struct {
	*fakeVM
	asked   chan struct{} // closed by the first RAM call
	release chan struct{}
	once    sync.Once
}

func (v *gatedVM) RAM() framework.Layout {
	v.once.Do(func() { close(v.asked) })
	select {
	case <-v.release:
	case <-time.After(time.Minute):
	}
	return v.fakeVM.RAM()
}

// TestCloseDuringRAMCheckNotRefused: Close, which is safe from any
// goroutine, returns while Send or Receive is between taking the
// session and checking the VM's RAM. The VM is Open's, so the check
// must not say it is another: Close closed the session's RAM files,
// and the check must not need them. Before, checkRAM fstat'd Open's
// files there and refused Open's own VM ("RAM region 0: Open's file:
// fstat: bad file descriptor"); with Close racing it instead of
// returning first, a read of the file's descriptor raced its Close.
func TestCloseDuringRAMCheckNotRefused(t *testing.T) {
	vm := newFakeVM(t)
	for _, role := range roles {
		t.Run(role.String(), func(t *testing.T) {
			lk := startLeakCheck(t)
			rs := openRAM(t, role, vm.RAM())
			gated := &gatedVM{fakeVM: vm, asked: make(chan struct{}), release: make(chan struct{})}
			type result struct {
				rep engine.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				var r result
				if role == transport.RoleSend {
					r.rep, r.err = rs.s.Send(context.Background(), gated, nil)
				} else {
					r.rep, r.err = rs.s.Receive(context.Background(), gated)
				}
				done <- r
			}()
			select {
			case <-gated.asked:
			case <-time.After(time.Minute):
				t.Fatal("Send or Receive did not ask for the VM's RAM within a minute")
			}
			rs.s.Close()
			close(gated.release)
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Send or Receive did not return within a minute of Close")
			}
			t.Logf("%v after Close: %s, %v", role, r.rep.Status, r.err)
			if r.err == nil || r.rep.Status == engine.StatusCompleted {
				t.Errorf("%v on a closed session: %v (%+v), want it failed", role, r.err, r.rep)
			}
			if r.err != nil && strings.Contains(r.err.Error(), "not the one whose RAM was given to Open") {
				t.Errorf("%v refused Open's own VM after Close: %v", role, r.err)
			}
			lk.check(t)
		})
	}
}
