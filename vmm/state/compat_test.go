package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionCompat is the state blob rule of
// docs/ARCHITECTURE.md#versions: a destination reads the current and the
// previous container version and refuses any other, naming both. Version
// 1 has no predecessor; once Version is 2, MinVersion must be 1 and
// today's testdata/sample.golden, kept as testdata/v1/sample.golden, must
// still decode.
func TestVersionCompat(t *testing.T) {
	if want := max(1, Version-1); MinVersion != want {
		t.Fatalf("MinVersion is %d, the rule says %d (current and previous)", MinVersion, want)
	}
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint16{0, MinVersion - 1, Version + 1} {
		b := bytes.Clone(good)
		b[8], b[9] = byte(v), byte(v>>8)
		_, err := Decode(reseal(b))
		if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), fmt.Sprintf("version %d ", v)) {
			t.Errorf("version %d: %v, want a refusal naming it", v, err)
		}
		if v != 0 && !strings.Contains(err.Error(), fmt.Sprint(Version)) {
			t.Errorf("version %d: %v does not name this build's version %d", v, err, Version)
		}
	}
	if MinVersion == Version {
		return
	}
	path := filepath.Join("testdata", fmt.Sprintf("v%d", MinVersion), "sample.golden")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the previous version's golden blob: %v (keep it when Version changes)", err)
	}
	if _, err := Decode(old); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
