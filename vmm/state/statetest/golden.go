package statetest

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Golden compares got with the hex dump in testdata/<name>.golden and
// returns the golden's bytes, for the caller to decode. With update it
// first rewrites the file from got.
func Golden(t testing.TB, name string, got []byte, update bool) []byte {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.Dump(got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dump, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	want := undump(t, string(dump))
	if !bytes.Equal(got, want) {
		t.Fatalf("the %s encoding changed: a section payload change bumps state.Version "+
			"(docs/ARCHITECTURE.md#versions), then go test -update rewrites %s\ngot:\n%s", name, path, hex.Dump(got))
	}
	return want
}

// undump parses hex.Dump output back into bytes.
func undump(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if len(line) < 10 {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(line[10:min(len(line), 59)], " ", ""))
		if err != nil {
			t.Fatalf("golden line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}
