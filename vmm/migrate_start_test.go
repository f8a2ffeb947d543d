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
