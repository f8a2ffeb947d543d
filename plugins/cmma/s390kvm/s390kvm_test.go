//go:build !(linux && s390x)

package s390kvm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/hint"
)

// TestNotS390: off s390 every call says "not supported", in the words the
// provider logs, and classed so the engine migrates without CMMA hints.
func TestNotS390(t *testing.T) {
	v := New(3)
	_, vals, err := v.CMMABits(context.Background(), 0, 16)
	if !errors.Is(err, hint.ErrNotSupported) || vals != nil || !strings.Contains(err.Error(), "CMMA is s390-only") {
		t.Fatalf("CMMABits: %v, %v", vals, err)
	}
	for name, err := range map[string]error{
		"StartMigration": v.StartMigration(),
		"StopMigration":  v.StopMigration(),
		"Set":            v.Set(0, []byte{1}, ^uint64(0)),
	} {
		if !errors.Is(err, hint.ErrNotSupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := v.MigrationMode(); !errors.Is(err, hint.ErrNotSupported) {
		t.Errorf("MigrationMode: %v", err)
	}
	if _, _, _, err := v.Dirty(0, make([]byte, 8)); !errors.Is(err, hint.ErrNotSupported) {
		t.Errorf("Dirty: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := v.CMMABits(ctx, 0, 16); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if first, vals, err := v.CMMABits(context.Background(), 5, 0); first != 5 || vals != nil || err != nil {
		t.Errorf("no values asked: %d, %v, %v", first, vals, err)
	}
}
