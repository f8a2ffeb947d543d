package vmm

import (
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
)

func TestSideAfter(t *testing.T) {
	for _, c := range []struct {
		role   transport.Role
		status string
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
