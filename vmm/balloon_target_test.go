package vmm

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestBalloonTargetNotAfterPause: a new balloon target (balloon with
// target_mib) is device state, which a migration carries in the state
// its source saves after its pause and a destination replaces with the
// state it loads. While a migration holds the source paused it is
// refused and changes nothing, and so it is on a destination while its
// migration owns the VM; during a source's live pass it goes through
// (the state saved after the pause has it); once the migration ended it
// works again. Before, it was never refused: set after the source's
// pause, a target the command answered as set was in no state that
// reached the destination (or raced the save, which reads the device
// and its transport one after the other: savestate.go), and set on a
// destination before the load, the loaded state replaced it.
func TestBalloonTargetNotAfterPause(t *testing.T) {
	set := func(call func(string, any, any) error, mib uint64) error {
		return call("balloon", map[string]uint64{"target_mib": mib}, nil)
	}
	// refused checks the refusal, which says why (the reason on a
	// destination is its own), and that the target stayed pages.
	refused := func(t *testing.T, v *VM, err error, when, why string, pages uint32) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "balloon is refused ("+why) {
			t.Errorf("balloon target %s: %v, want refused (%s...)", when, err, why)
		}
		if got := deviceCall(t, v.balloon.SaveContext).Target; got != pages {
			t.Errorf("balloon target %s: the device's target is %d pages, want %d (unchanged)", when, got, pages)
		}
	}
	t.Run("source", func(t *testing.T) {
		v := fakeWithRAM(t, StateRunning)
		newStatsGuest(t, v)
		call := serveCalls(t, v)
		own := claimFake(t, v, v.migration(), engine.PhaseDirty)

		// A live pass: set, and the state saved after the pause has it.
		if err := set(call, 1); err != nil {
			t.Fatalf("balloon target in a live pass: %v", err)
		}
		if got := deviceCall(t, v.balloon.SaveContext).Target; got != 256 {
			t.Fatalf("balloon target in a live pass: %d pages, want 256", got)
		}

		// The switch-over: the engine's pause; its state is saved now.
		if err := (migrationVM{v: v, own: own}).Pause(context.Background()); err != nil {
			t.Fatal(err)
		}
		refused(t, v, set(call, 2), "after the source's pause", "a new target is device state", 256)

		// The migration failed: the engine resumed the VM, and it is the
		// control socket's again.
		if err := (migrationVM{v: v, own: own}).Resume(); err != nil {
			t.Fatal(err)
		}
		v.endMigration(own, v.migration(), transport.RoleSend, engine.Report{Status: engine.StatusFailed}, nil)
		if err := set(call, 2); err != nil {
			t.Fatalf("balloon target after the migration: %v", err)
		}
		if got := deviceCall(t, v.balloon.SaveContext).Target; got != 512 {
			t.Fatalf("balloon target after the migration: %d pages, want 512", got)
		}
	})
	t.Run("destination", func(t *testing.T) {
		const dstWhy = "this destination's migration owns the VM"
		v := fakeWithRAM(t, StateIncoming)
		newStatsGuest(t, v) // as the state loaded a device the guest had set up
		call := serveCalls(t, v)
		own, err := v.claim(context.Background(), v.migration(), transport.RoleReceive.String(), "a", takes(func() {}),
			func(st State) error { return v.canMigrate(transport.RoleReceive, st) })
		if err != nil {
			t.Fatal(err)
		}
		v.migration().progress(engine.Progress{Phase: engine.PhaseBulk, Handover: engine.HandoverReceiving})
		refused(t, v, set(call, 1), "before the destination loaded the state", dstWhy, 0)
		if err := loadFake(migrationVM{v: v, own: own}); err != nil {
			t.Fatal(err)
		}
		refused(t, v, set(call, 1), "on a loaded destination", dstWhy, 0)
		if err := (migrationVM{v: v, own: own}).Resume(); err != nil { // COMMIT
			t.Fatal(err)
		}
		refused(t, v, set(call, 1), "while the migration owns the running destination", dstWhy, 0)
		v.endMigration(own, v.migration(), transport.RoleReceive, engine.Report{Status: engine.StatusCompleted}, nil)
		if err := set(call, 1); err != nil {
			t.Fatalf("balloon target once the migration ended: %v", err)
		}
		if got := deviceCall(t, v.balloon.SaveContext).Target; got != 256 {
			t.Fatalf("balloon target once the migration ended: %d pages, want 256", got)
		}
	})
}
