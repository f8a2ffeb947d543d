package vmm

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestMigrateTransportFails: migrate-send whose transport cannot start
// fails the command itself (the session's Open), records a failed
// migration, and leaves the VM running and free for the next command.
func TestMigrateTransportFails(t *testing.T) {
	v := fakeWithRAM(t, StateRunning)
	mg := &migration{}
	raw, _ := json.Marshal(api.MigrateArgs{Plugin: "/nonexistent/ferry-transport-x"})
	_, err := v.startMigration(context.Background(), mg, raw, transport.RoleSend)
	if err == nil || !strings.Contains(err.Error(), "start transport plugin") {
		t.Fatalf("migrate-send with a missing plugin: %v", err)
	}
	st := mg.status()
	if st == nil || !st.Done || st.Side != api.SideRunning || st.Report == nil || st.Report.Status != engine.StatusFailed {
		t.Errorf("migration after the failed start: %+v", st)
	}
	if s := v.Status().State; s != StateRunning {
		t.Errorf("VM %s after the failed start, want running", s)
	}
	own := claimFake(t, v, &migration{}, "bulk") // the VM is free again
	own.release(func() {})

	raw, _ = json.Marshal(api.MigrateArgs{Plugin: "ferry-transport-x"})
	if _, err := v.startMigration(context.Background(), &migration{}, raw, transport.RoleSend); err == nil ||
		!strings.Contains(err.Error(), "absolute path") {
		t.Errorf("migrate-send with a relative plugin path: %v", err)
	}
}

// TestMigrationID: the id migrate-send (or migrate-incoming) brings is
// what migrate-status and migrate-resolve report for that migration, so
// migrate can tell the two sides of one migration from a VMM that took
// part in another; one longer than api.MaxIDLen is refused.
func TestMigrationID(t *testing.T) {
	v := fakeWithRAM(t, StateRunning)
	mg := &migration{}
	raw, _ := json.Marshal(api.MigrateArgs{Plugin: "/nonexistent/ferry-transport-x", ID: "job-7f3a"})
	if _, err := v.startMigration(context.Background(), mg, raw, transport.RoleSend); err == nil {
		t.Fatal("migrate-send with a missing plugin went through")
	}
	if st := mg.status(); st == nil || st.ID != "job-7f3a" {
		t.Errorf("migrate-status %+v: want id job-7f3a", st)
	}
	if res, err := v.resolve(context.Background(), mg, api.ResolveQuery); err != nil || res.ID != "job-7f3a" {
		t.Errorf("migrate-resolve query %+v, %v: want id job-7f3a", res, err)
	}
	raw, _ = json.Marshal(api.MigrateArgs{Plugin: "/nonexistent/ferry-transport-x", ID: strings.Repeat("x", api.MaxIDLen+1)})
	if _, err := v.startMigration(context.Background(), mg, raw, transport.RoleSend); err == nil || !strings.Contains(err.Error(), "id of") {
		t.Errorf("an id of %d bytes: %v", api.MaxIDLen+1, err)
	}
}
