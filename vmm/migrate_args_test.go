package vmm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

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

// TestMigrateArgsStallTimeout: the job's stall_timeout, as migrate sends
// it to both sides (stall_timeout_ms), reaches the engine
// (engine.Options.StallTimeout) through the control socket's JSON, on
// the source and on the destination alike (one parseMigrateArgs and
// sessionSpec for both); without it the engine keeps its default; a
// negative value, or one beyond a day, is refused naming the field, as
// the field itself is by a VMM that does not know it.
func TestMigrateArgsStallTimeout(t *testing.T) {
	raw, err := json.Marshal(api.MigrateArgs{Plugin: "/bin/true", StallTimeoutMS: 45000})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"stall_timeout_ms":45000`) {
		t.Errorf("encoded arguments %s lack stall_timeout_ms", raw)
	}
	a, err := parseMigrateArgs(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := sessionSpec(a).Engine.StallTimeout; got != 45*time.Second {
		t.Errorf("engine.Options.StallTimeout %v, want 45s", got)
	}
	// A VMM from before the field refuses it by name, as any unknown
	// argument (docs/ARCHITECTURE.md, "Job files and the control socket").
	var older struct {
		Plugin string `json:"plugin"`
	}
	if err := decodeArgs([]byte(`{"plugin":"/bin/true","stall_timeout_ms":45000}`), &older); err == nil || err.Error() != `bad arguments: json: unknown field "stall_timeout_ms"` {
		t.Errorf("arguments without the field took stall_timeout_ms: %v", err)
	}
	if got := sessionSpec(api.MigrateArgs{}).Engine.StallTimeout; got != 0 {
		t.Errorf("arguments without stall_timeout_ms gave %v, want 0 (the engine's default)", got)
	}
	for _, raw := range []string{`{"plugin":"/bin/true","stall_timeout_ms":-1}`, `{"plugin":"/bin/true","stall_timeout_ms":86400001}`} {
		if _, err := parseMigrateArgs([]byte(raw)); err == nil || !strings.Contains(err.Error(), "stall_timeout_ms") {
			t.Errorf("%s: %v, want refused naming stall_timeout_ms", raw, err)
		}
	}
}
