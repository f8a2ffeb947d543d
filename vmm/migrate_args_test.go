package vmm

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestMigrateArgsCredentials: credentials survive the control socket's
// JSON whole; without them the engine gets none (and the transport
// refuses to open).
func TestMigrateArgsCredentials(t *testing.T) {
	src, _, err := transport.MintCredentials(true)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(api.MigrateArgs{Plugin: "/bin/true", Credentials: &src})
	if err != nil {
		t.Fatal(err)
	}
	var a api.MigrateArgs
	if err := decodeArgs(raw, &a); err != nil {
		t.Fatal(err)
	}
	if got := sessionSpec(a).Engine.Credentials; !reflect.DeepEqual(got, src) {
		t.Errorf("credentials after JSON: %+v, want %+v", got, src)
	}
	if !sessionSpec(api.MigrateArgs{}).Engine.Credentials.Empty() {
		t.Error("arguments without credentials gave some")
	}
}

// TestMigrateArgsID: the id migrate gives both sides reaches the engine
// (engine.Options.MigrationID), through the control socket's JSON, on
// the source and on the destination alike (one sessionSpec for both):
// without it a destination would take another migration's HELLO.
func TestMigrateArgsID(t *testing.T) {
	raw, err := json.Marshal(api.MigrateArgs{Plugin: "/bin/true", ID: "B5XQ2N7RYVQ3WJ6GZ4UMTKHC2E"})
	if err != nil {
		t.Fatal(err)
	}
	var a api.MigrateArgs
	if err := decodeArgs(raw, &a); err != nil {
		t.Fatal(err)
	}
	if got := sessionSpec(a).Engine.MigrationID; got != "B5XQ2N7RYVQ3WJ6GZ4UMTKHC2E" {
		t.Errorf("engine.Options.MigrationID %q, want migrate's id", got)
	}
	if got := sessionSpec(api.MigrateArgs{}).Engine.MigrationID; got != "" {
		t.Errorf("arguments without an id gave %q", got)
	}
}
