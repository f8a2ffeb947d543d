package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveMigratedInSourceBesideNone: the job's source VMM runs a
// guest it received in an earlier migration (j0), so it reports role
// "receive" in j0 until its next migrate-send, as every VMM that took
// a guest by migration does. migrate for the job fails before that
// send (its destination does not answer migrate-incoming) and says
// that nothing was started (until TestRunDestinationAbsentStartsNothing
// it printed the instruction to run migrate -resolve once both sockets
// answer); a new destination VMM, in no migration, answers there. An
// operator's migrate -resolve moves nothing and exits 0: nothing waits
// for a decision, and the guest runs on the source. Since 3fd97bc it
// refused with exit 1 ("not this job's side of its migration"), and
// told the operator to find j0's other side or to resolve with the
// sockets swapped.
func TestResolveMigratedInSourceBesideNone(t *testing.T) {
	c := newRunCase(t)
	c.src.role, c.src.id = "receive", "j0"
	c.src.finishWith(0, engine.StatusCompleted, api.SideRunning)
	c.dst.kill()
	_, out, err := c.run(context.Background(), t)
	if err == nil {
		t.Fatal("migrate to a destination that does not answer succeeded")
	}
	if !strings.Contains(err.Error(), "nothing was started") || strings.Contains(out, "migrate -resolve") {
		t.Fatalf("err %v, migrate said\n%s\nwant nothing started, and no migrate -resolve to run", err, out)
	}
	c.dst = newFakeVMMAt(t, c.dst.sock, "", &c.calls, &c.mu)
	c.dst.inNoMigration()
	if code, _, _ := c.resolveMain(t); code != 0 {
		t.Errorf("migrate -resolve exit %d, want 0", code)
	}
	c.wantNothingAsked(t)
}

// TestResolveSettledWrongRoleBesideNone: migrate -resolve where a VMM
// in the wrong role for its socket runs the guest, its migration over,
// and the other socket's VMM takes part in none or does not answer.
// Only a receiver at the source's socket beside a destination that
// answers with none is left to plan (sourceArrivedBesideNone): the
// guest runs on the source, nothing is asked, exit 0, as before 3fd97bc,
// which refused it (exit 1). Beside a destination that does not answer
// it stays refused (exit 1, no command printed): a VMM that replaced
// the job's source may stand at its socket, and the destination may
// hold the guest, handover-unknown. So does a sender at the
// destination's socket beside a source in none: it may have sent this
// job's guest on, or be a stranger.
func TestResolveSettledWrongRoleBesideNone(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
		code int
		want string
	}{
		{"a receiver at the source's socket, the destination in none", func(c *runCase) {
			c.src.role, c.src.id = "receive", "j0"
			c.src.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.inNoMigration()
		}, 0, "resolved: the guest runs on the source"},
		{"the same by tag fingerprint", func(c *runCase) {
			c.src.role, c.src.tag = "receive", tagA
			c.src.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.inNoMigration()
		}, 0, "resolved: the guest runs on the source"},
		{"a receiver at the source's socket, the destination unreachable", func(c *runCase) {
			c.src.role, c.src.id = "receive", "j0"
			c.src.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.kill()
		}, 1, `reports role "receive" in migration id j0`},
		{"a sender at the destination's socket, the source in none", func(c *runCase) {
			c.src.inNoMigration()
			c.dst.role, c.dst.id = "send", "j2"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}, 1, `reports role "send" in migration id j2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			code, stdout, stderr := c.resolveMain(t)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			c.wantNothingAsked(t)
			wantSays(t, stdout+stderr, tc.want)
			wantNoCommand(t, stdout+stderr, "nothing waits for a decision, or nothing shows the VMM to be this job's side")
		})
	}
}
