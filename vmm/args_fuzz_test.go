package vmm

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// FuzzCommandArgs feeds one control request line through the protocol
// decoder (control.DecodeRequest) and then its args through every
// argument decoder of the VM's commands: decodeArgs into each argument
// type, statePath, withTimeout, decodeID, migrate-resolve's checkNamed and
// parseMigrateArgs. None may panic, and
// what one accepts must be within its documented bounds and survive a
// round trip. The corpus is in testdata/fuzz/FuzzCommandArgs.
func FuzzCommandArgs(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`,
		`{"cmd":"state-save","args":{"path":"/tmp/x/../vm.state"}}`,
		`{"cmd":"state-load","args":{"path":""}}`,
		`{"cmd":"hint-wait","args":{"timeout_ms":250}}`,
		`{"cmd":"balloon-wait","args":{"timeout_ms":-1}}`,
		`{"cmd":"balloon-stats","args":{"timeout_ms":9223372036854775807}}`,
		`{"cmd":"balloon","args":{"target_mib":64}}`,
		`{"cmd":"migrate-send","args":{"plugin":"/bin/p","transport":{"listen":"127.0.0.1:1"},"max_downtime_ms":300,` +
			`"hints":[{"name":"balloon","plugin":"/bin/h","config":{"a":[1,2]},"deadline_ms":5}]}}`,
		`{"cmd":"migrate-incoming","args":{"plugin":"rel","max_passes":-3}}`,
		`{"cmd":"migrate-send","args":{"plugin":"/p","max_downtime_ms":1e30}}`,
		`{"cmd":"migrate-incoming","args":{"plugin":"/p","stall_timeout_ms":-30000}}`,
		`{"cmd":"pause","args":null}`,
		`{"cmd":"resume","args":{"unknown":1}}`,
		`{"cmd":"quit","args":[1,2,3]}`,
		`{"cmd":"migrate-cancel","args":{"id":"a"}}`,
		`{"cmd":"migrate-resolve","args":{"action":"resume","id":"a"}}`,
		`{"cmd":"quit","args":{"id":"a\u001b[2J"}}`,
		`{"cmd":"migrate-cancel","args":{"tag_fingerprint":"0a0a0a0a0a0a0a0a"}}`,
		`{"cmd":"quit","args":{"id":"a","tag_fingerprint":"0A0A0A0A0A0A0A0A"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := control.DecodeRequest(line)
		if err != nil {
			return
		}
		raw := req.Args
		checkDecodeArgs(t, raw)
		if p, err := statePath(raw); err == nil {
			if p == "" || filepath.Clean(p) != p {
				t.Fatalf("statePath(%q) = %q", raw, p)
			}
		}
		checkTimeout(t, raw)
		if n, err := decodeID(raw); err == nil && (len(n.ID) > api.MaxIDLen || strings.IndexFunc(n.ID, unicode.IsControl) >= 0 ||
			n.TagFingerprint != "" && !engine.ValidTagFingerprint(n.TagFingerprint)) {
			t.Fatalf("decodeID(%q) accepted the id %q (%d bytes), tag fingerprint %q", raw, n.ID, len(n.ID), n.TagFingerprint)
		}
		var ra api.ResolveArgs
		if decodeArgs(raw, &ra) == nil && checkNamed(resolveNamed(ra)) == nil &&
			(checkIDText(ra.ID) != nil || ra.TagFingerprint != "" && !engine.ValidTagFingerprint(ra.TagFingerprint)) {
			t.Fatalf("migrate-resolve's check accepted %q: id %q, tag fingerprint %q", raw, ra.ID, ra.TagFingerprint)
		}
		if a, err := parseMigrateArgs(raw); err == nil {
			if !filepath.IsAbs(a.Plugin) || a.MaxDowntimeMS < 0 || a.MaxDowntimeMS > maxDowntimeMS || a.MaxPasses < 0 ||
				a.StallTimeoutMS < 0 || a.StallTimeoutMS > maxDowntimeMS || checkIDText(a.ID) != nil {
				t.Fatalf("parseMigrateArgs(%q) accepted %+v", raw, a)
			}
			enc, err := json.Marshal(a)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", a, err)
			}
			again, err := parseMigrateArgs(enc)
			if err != nil {
				t.Fatalf("re-decode %s: %v", enc, err)
			}
			enc2, _ := json.Marshal(again)
			if string(enc) != string(enc2) {
				t.Fatalf("round trip changed the arguments:\n%s\n%s", enc, enc2)
			}
		}
	})
}

// checkDecodeArgs: decodeArgs is strict (no unknown fields), and what it
// accepts re-encodes to something it accepts again, with the same value.
func checkDecodeArgs(t *testing.T, raw json.RawMessage) {
	for _, dst := range []any{&timeoutArgs{}, &api.MigrateArgs{}, &api.IDArgs{}, &api.ResolveArgs{}, &struct {
		Path string `json:"path"`
	}{}, &struct {
		TargetMiB *uint64 `json:"target_mib"`
	}{}} {
		if err := decodeArgs(raw, dst); err != nil {
			if !strings.HasPrefix(err.Error(), "bad arguments: ") {
				t.Fatalf("decodeArgs(%q) error without its context: %v", raw, err)
			}
			continue
		}
		enc, err := json.Marshal(dst)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", dst, err)
		}
		again := reflect.New(reflect.TypeOf(dst).Elem()).Interface()
		if err := decodeArgs(enc, again); err != nil {
			t.Fatalf("decodeArgs(%q) accepted, its re-encoding %s is refused: %v", raw, enc, err)
		}
		if enc2, _ := json.Marshal(again); string(enc2) != string(enc) {
			t.Fatalf("round trip of %q: %s then %s", raw, enc, enc2)
		}
	}
}

// checkTimeout: withTimeout's deadline is never in the past and never
// later than the longest timeout it allows.
func checkTimeout(t *testing.T, raw json.RawMessage) {
	const def = 10 * time.Second
	before := time.Now()
	ctx, cancel, err := withTimeout(context.Background(), raw, def)
	if err != nil {
		return
	}
	defer cancel()
	dl, ok := ctx.Deadline()
	if !ok {
		t.Fatalf("withTimeout(%q) set no deadline", raw)
	}
	if dl.Before(before) || dl.After(time.Now().Add(max(def, maxTimeoutMS*time.Millisecond))) {
		t.Fatalf("withTimeout(%q): deadline %v from now", raw, time.Until(dl))
	}
}
