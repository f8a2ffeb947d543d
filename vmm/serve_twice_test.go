package vmm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestServeTwiceOneMigration: a VM served on two control sockets (an
// embedder calling Serve twice) has one migration record. A
// migrate-incoming started through either socket is seen by the other's
// migrate-status, blocks resume and quit through it, and is cancelled
// through it (by id); the VMM's shutdown cancels it too. Before, each
// Serve made its own record and the last replaced the VM's: the other
// socket answered "no migration has run" and "no migration is
// running", and a shutdown that read the last socket's record stopped
// the VM under a migration that still waited for its source. The
// transport is transports/tcp in process (-transport-in-process),
// listening on a real loopback port.
func TestServeTwiceOneMigration(t *testing.T) {
	_, creds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		via int    // the socket that starts the migration: 0 served first, 1 second
		end string // how it ends: migrate-cancel through the other socket, or the shutdown
	}{{0, "cancel"}, {1, "cancel"}, {0, "shutdown"}, {1, "shutdown"}} {
		t.Run(fmt.Sprintf("%s-via-%d", tc.end, tc.via), func(t *testing.T) { serveTwice(t, creds, tc.via, tc.end) })
	}
}

// serveTwice is one case of TestServeTwiceOneMigration.
func serveTwice(t *testing.T, creds transport.Credentials, via int, end string) {
	v := fakeWithRAM(t, StateIncoming)
	v.cfg.TransportInProcess = true
	calls := []func(cmd string, args, res any) error{serveCalls(t, v), serveCalls(t, v)}
	start, other := calls[via], calls[1-via]
	args := api.MigrateArgs{ID: "job-1", Plugin: "/opt/ferry/ferry-transport-tcp", Credentials: &creds,
		Transport: map[string]any{"listen": freeAddr(t)}, IncomingTimeoutMS: 20000}
	if err := start("migrate-incoming", args, nil); err != nil {
		t.Fatalf("socket %d: migrate-incoming: %v", via, err)
	}
	var st api.Migration
	switch end {
	case "cancel":
		if err := other("migrate-status", nil, &st); err != nil || st.ID != "job-1" || st.Done || st.Role != "receive" {
			t.Fatalf("socket %d: migrate-status of the migration started through socket %d: %+v, %v", 1-via, via, st, err)
		}
		for _, cmd := range []string{"resume", "quit"} {
			if err := other(cmd, nil, nil); err == nil || !strings.Contains(err.Error(), "the VM is migrating") {
				t.Errorf("socket %d: %s while migrating: %v; want refused", 1-via, cmd, err)
			}
		}
		var res api.CancelResult
		if err := other("migrate-cancel", api.IDArgs{ID: "job-1"}, &res); err != nil || !res.Cancelled {
			t.Fatalf("socket %d: migrate-cancel: %+v, %v", 1-via, res, err)
		}
	case "shutdown": // it cancels the incoming migration, and stops the VM once that ended
		if v.shutdown() {
			t.Fatal("the shutdown was cancelled")
		}
	}
	select {
	case <-v.stopped: // a cancelled destination exits
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the VM did not stop within 10 s", end)
	}
	for i, call := range calls {
		st = api.Migration{}
		if err := call("migrate-status", nil, &st); err != nil || !st.Done || st.Report == nil || st.Report.Status != engine.StatusCancelled {
			t.Errorf("%s: socket %d's migrate-status once the VM stopped: %+v (report %+v), %v; want done, cancelled",
				end, i, st, st.Report, err)
		}
	}
	v.plugins.Wait()
}
