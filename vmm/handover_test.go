package vmm

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

func TestSideAfter(t *testing.T) {
	for _, c := range []struct {
		role   transport.Role
		status engine.Status
		want   Side
	}{
		{transport.RoleSend, engine.StatusCompleted, SideMigrated},
		{transport.RoleSend, engine.StatusFailed, SideRunning},
		{transport.RoleSend, engine.StatusCancelled, SideRunning},
		{transport.RoleSend, engine.StatusHandoverUnknown, SideUnknown},
		{transport.RoleReceive, engine.StatusCompleted, SideRunning},
		{transport.RoleReceive, engine.StatusFailed, SideFailed},
		{transport.RoleReceive, engine.StatusCancelled, SideFailed},
		{transport.RoleReceive, engine.StatusHandoverUnknown, SideUnknown},
	} {
		if got := sideAfter(c.role, engine.Report{Status: c.status}); got != c.want {
			t.Errorf("%s %s: side %s, want %s", c.role, c.status, got, c.want)
		}
	}
}

func TestResolveTarget(t *testing.T) {
	send, recv := transport.RoleSend.String(), transport.RoleReceive.String()
	for _, c := range []struct {
		role, action string
		want         Side
	}{
		{send, ResolveResume, SideRunning},
		{send, ResolveMigrated, SideMigrated},
		{send, ResolveDiscard, ""},
		{recv, ResolveResume, SideRunning},
		{recv, ResolveDiscard, SideDiscarded},
		{recv, ResolveMigrated, ""},
		{recv, "run", ""},
		{"", ResolveDiscard, ""},
	} {
		got, err := resolveTarget(c.role, c.action)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("%q %q: %q, %v; want %q", c.role, c.action, got, err, c.want)
		}
	}
}

// bareVM is a VM without KVM: enough state for the resolve commands.
func bareVM(state State) *VM {
	v := &VM{run: newRunLock(), gate: vcpu.NewGate(), stopped: make(chan struct{}), cpusDone: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	v.state = state
	return v
}

// unknownMigration is a finished migration whose handover is unknown.
func unknownMigration(role transport.Role) *migration {
	rep := engine.Report{Status: engine.StatusHandoverUnknown, Handover: engine.HandoverUnknown}
	return &migration{cur: &Migration{Role: role.String(), Done: true, Side: SideUnknown, Report: &rep}}
}

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		role    transport.Role
		actions []string
		side    Side
		state   State
		errs    int // how many of the actions fail
	}{
		{transport.RoleSend, []string{ResolveQuery}, SideUnknown, StateHandoverUnknown, 0},
		{transport.RoleSend, []string{ResolveResume}, SideRunning, StateRunning, 0},
		{transport.RoleSend, []string{ResolveMigrated, ResolveMigrated}, SideMigrated, StateMigrated, 0},
		{transport.RoleSend, []string{ResolveMigrated, ResolveResume}, SideMigrated, StateMigrated, 1},
		{transport.RoleSend, []string{ResolveDiscard}, SideUnknown, StateHandoverUnknown, 1},
		{transport.RoleReceive, []string{ResolveResume, ResolveDiscard}, SideRunning, StateRunning, 1},
		{transport.RoleReceive, []string{ResolveDiscard, ResolveResume}, SideDiscarded, StateDiscarded, 1},
		{transport.RoleReceive, []string{ResolveMigrated}, SideUnknown, StateHandoverUnknown, 1},
	} {
		v, mg := bareVM(StateHandoverUnknown), unknownMigration(c.role)
		errs := 0
		var res ResolveResult
		for _, a := range c.actions {
			var err error
			if res, err = v.resolve(context.Background(), mg, a); err != nil {
				errs++
			}
		}
		if res.Side != c.side || v.Status().State != c.state || errs != c.errs {
			t.Errorf("%s %v: side %s, state %s, %d errors; want %s, %s, %d",
				c.role, c.actions, res.Side, v.Status().State, errs, c.side, c.state, c.errs)
		}
		select {
		case <-v.stopped:
			t.Errorf("%s %v: the VMM ended by itself", c.role, c.actions)
		default:
		}
		// The plain commands refuse a VM whose handover is unknown.
		if c.state == StateHandoverUnknown {
			if err := v.Resume(); err == nil {
				t.Errorf("%s: resume of a handover-unknown VM succeeded", c.role)
			}
			if err := v.Pause(context.Background()); err == nil {
				t.Errorf("%s: pause of a handover-unknown VM succeeded", c.role)
			}
		}
	}
}
