package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestRunFollowsOnlyASender: migrate follows the migration it started
// (follow, by its id); after one poll the VMM at the source's socket
// reports that id in role receive (another VMM started there that
// received a migration under the same id, reused by hand). It is not
// this migration's source: follow stops there, takes none of its
// progress or report for the source's, sends it nothing (no Ctrl-C
// cancel), and both sides are asked (conclude's resolve: the roles'
// refusal, nothing moved). Before, follow looked at the id only: it
// sent the receiver Ctrl-C's migrate-cancel and reported its cancelled
// migration as the source's, "the source's VM was stopped before it
// could be resumed"; and a receiver that ran its guest was reported as
// the source's completed migration, exit 0.
func TestRunFollowsOnlyASender(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase) context.Context
		// receiverEnd ends the receiver's migration as it takes the
		// source's socket (false: it still migrates).
		receiverEnd bool
	}{
		{"interrupted", func(c *runCase) context.Context { return c.src.interruptWhenSending(t) }, false},
		{"the receiver runs its guest", func(c *runCase) context.Context {
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			return context.Background()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			ctx := tc.set(c)
			c.src.looked = func(f *fakeVMM) { // the first status answered as the source's
				if f.statuses == 1 && f.role == "send" {
					f.role = "receive"
					if tc.receiverEnd {
						f.done, f.status, f.side = true, engine.StatusCompleted, api.SideRunning
					}
				}
			}
			rep, out, err := c.run(ctx, t)
			if err == nil || rep.Status == engine.StatusCompleted || rep.Status == engine.StatusCancelled {
				t.Errorf("status %s, err %v: want a failure, neither the receiver's report nor its cancel taken for the source's",
					rep.Status, err)
			}
			var notSrc *errNotSource
			if !errors.As(err, &notSrc) {
				t.Errorf("err %v: want it to say the VMM at the source's socket is not the source (*errNotSource)", err)
			}
			if acts := c.src.actIDs(); len(acts) != 0 {
				t.Errorf("the VMM at the source's socket was asked %q, want nothing", acts)
			}
			wantSays(t, out+errText(err), "receives in migration id "+c.src.id, "left alone")
			wantSaysNone(t, out+errText(err), "was stopped before it could be resumed")
			if strings.Contains(out, "migrate-resolve") && strings.Contains(out, "socat") {
				t.Errorf("migrate prints a command to run by hand beside a VMM in the wrong role:\n%s", out)
			}
		})
	}
}
