package main

import (
	"context"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveRolesWithID: migrate resolves the migration it started or
// follows (resolver.id, here "a"), and a VMM at one of the job's sockets
// reports that id in the role the other socket's VMM must take: a
// sender at the destination's socket that reused the id by hand, a
// receiver at the source's socket, both (the job names its sockets the
// wrong way round). Neither side is moved: no act reaches either VMM,
// the verdict is manual with an error, and migrate says why. Before,
// pair looked only at the ids when it had one: the sender running its
// own guest had a handover-unknown source told migrated and quit (its
// real destination perhaps never ran the guest), the receiver at the
// source's socket, running, had this migration's handover-unknown
// destination discarded and quit (perhaps the guest's only copy), the
// swapped pair had a discard sent to its sender (this fake takes it, the
// reference VMM refuses a source's discard), then its receiver resumed
// and the sender quit, and a sender alone at the destination's socket,
// running, was taken for the destination running the guest.
func TestResolveRolesWithID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    func(c *runCase)
		follow bool // run migrate for the job: it follows the source's migration a
		want   string
	}{
		{"follow: a sender at the destination's socket reused the id", func(c *runCase) {
			c.src.running = true
			c.src.finishWith(2, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.role = "send"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}, true, `report role "send" in migration id a`},
		{"two receivers under one id", func(c *runCase) {
			c.src.role = "receive"
			c.src.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, false, `report role "receive" in migration id a`},
		{"swapped sockets", func(c *runCase) {
			c.src.role, c.dst.role = "receive", "send"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, false, "the wrong way round"},
		{"a sender alone at the destination's socket", func(c *runCase) {
			c.src.inNoMigration()
			c.dst.role = "send"
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
		}, false, `reports role "send" in migration id a`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			tc.set(c)
			var text string
			if tc.follow {
				rep, out, err := c.run(context.Background(), t)
				text = out
				if err == nil || rep.Resolved != "" {
					t.Errorf("err %v, resolved %q: want a failure, nothing resolved", err, rep.Resolved)
				}
			} else {
				v, out, err := c.resolveInProcess(t, "a", 2*time.Second)
				text = out
				if v != verdictManual || err == nil {
					t.Errorf("verdict %d, err %v: want manual, an error", v, err)
				}
			}
			c.wantNothingAsked(t)
			wantSays(t, text, tc.want)
			wantNoCommand(t, text, "to a VMM whose part in the migration it cannot tell")
		})
	}
}

// TestResolveSwappedSockets: migrate -resolve for a job that names its
// two sockets the wrong way round: the VMM at the source's socket
// receives in the migration (named by one id, or without one by one tag
// fingerprint) and the one at the destination's sends in it. Nothing is
// moved, and migrate says the sockets are swapped and to resolve with a
// job that names them the other way, with no command to a VMM; it exits
// 1. Before, it said the two take part in two different migrations, and
// to resolve each with the job whose sockets hold both sides: the
// operator was not told that this job's two VMMs are one migration's.
func TestResolveSwappedSockets(t *testing.T) {
	for _, named := range []struct {
		name string
		set  func(c *runCase)
	}{
		{"by id", func(c *runCase) { c.src.id, c.dst.id = "a", "a" }},
		{"by tag fingerprint", func(c *runCase) { c.src.tag, c.dst.tag = tagA, tagA }},
	} {
		t.Run(named.name, func(t *testing.T) {
			c := newRunCase(t)
			named.set(c)
			c.src.role, c.dst.role = "receive", "send"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			text := c.resolveRefused(t)
			wantSays(t, text, "the wrong way round",
				"whose source control socket is "+c.dst.sock+" and whose destination control socket is "+c.src.sock)
			wantSaysNone(t, text, "two different migrations")
		})
	}
}

// TestResolveSharedName: migrate -resolve where the VMMs at both of the
// job's sockets report one id in one role (two senders, two receivers:
// the id reused by hand). Nothing is moved, no command is printed, exit
// 1, and migrate says that the one id names two migrations. Before, it
// said the two take part in two different migrations "(source id a;
// destination id a)", which read as a contradiction, and to resolve each
// with the job whose sockets hold both sides.
func TestResolveSharedName(t *testing.T) {
	for _, role := range []string{"send", "receive"} {
		t.Run(role, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			c.src.role, c.dst.role = role, role
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideRunning)
			text := c.resolveRefused(t)
			wantSays(t, text, "reused by hand")
			wantSaysNone(t, text, "two different migrations")
		})
	}
}

// TestResolveOneSideWrongRole: migrate -resolve where the VMM at one of
// the job's sockets reports a migration in the role of the other socket
// and the other VMM holds none: a handover-unknown receiver at the
// source's socket, a handover-unknown sender at the destination's
// socket. Neither is this job's side of its migration: nothing is
// moved, no command printed, exit 1. Before, the receiver was offered
// the source's resume (a second running copy if its real source runs
// the guest), and the sender the destination's. One in the wrong role
// that runs the guest, its migration over, is left to plan
// (settledBesideNone, TestResolveMigratedInSourceBesideNone).
func TestResolveOneSideWrongRole(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
		want func(c *runCase) string // what migrate says, naming the socket
	}{
		{"a receiver at the source's socket", func(c *runCase) {
			c.src.role, c.src.id = "receive", "a"
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.inNoMigration()
		}, func(c *runCase) string {
			return "source socket " + c.src.sock + ` reports role "receive" in migration id a`
		}},
		{"a sender at the destination's socket", func(c *runCase) {
			c.src.inNoMigration()
			c.dst.role, c.dst.id = "send", "a"
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, func(c *runCase) string {
			return "destination socket " + c.dst.sock + ` reports role "send" in migration id a`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			wantSays(t, c.resolveRefused(t), tc.want(c))
		})
	}
}
