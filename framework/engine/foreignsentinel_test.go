package engine

import (
	"errors"
	"fmt"
	"testing"
)

// TestForeignSentinelNotStatus: a VMM call fails, before the handover
// could begin, with an error of the VMM's own that wraps one of the
// engine's sentinels (a VMM that passes on an error it got from an
// earlier migration, say). The migration fails on both sides: the
// source resumes its VM, the destination never runs it. Report.Status
// must say so on each side, whatever that error wraps: it follows the
// handover the engine itself reached, not errors.Is through a foreign
// error (reportStatus). The VMM's error stays wrapped, for a caller's
// errors.Is. Before, a source whose SaveState's error wrapped
// ErrPostcopyCheck reported completed, its VM running again (the
// reference VMM took its side for migrated, which migrate quits), one
// that wrapped ErrHandoverUnknown or ErrPostcopyBroken reported those;
// a destination whose LoadState's error did the same reported so too,
// never having run the VM.
func TestForeignSentinelNotStatus(t *testing.T) {
	for _, inner := range []error{ErrPostcopyCheck, ErrHandoverUnknown, ErrPostcopyBroken} {
		for _, side := range []string{"source", "destination"} {
			t.Run(fmt.Sprintf("%s/%v", side, inner), func(t *testing.T) {
				src, dst := twoRegions(t)
				for p := uint64(0); p < src.layout.Pages(); p++ {
					src.write(p, 0x22)
				}
				foreign := fmt.Errorf("vmm: an earlier migration's end: %w", inner)
				if side == "source" {
					src.failSave = foreign
				} else {
					dst.failLoad = foreign
				}
				srep, serr, drep, derr := migrate(t, src, dst, Options{}, nil)
				t.Logf("source: %s, %s: %v\ndestination: %s, %s: %v", srep.Status, srep.Handover, serr,
					drep.Status, drep.Handover, derr)
				if serr == nil || srep.Status != StatusFailed || srep.Handover != HandoverFailed || src.paused {
					t.Errorf("source: status %s, handover %s, paused %v (%v); want failed, its VM running again",
						srep.Status, srep.Handover, src.paused, serr)
				}
				if derr == nil || drep.Status != StatusFailed || drep.Handover != HandoverFailed || dst.resumed != 0 {
					t.Errorf("destination: status %s, handover %s, %d resumes (%v); want failed, never run",
						drep.Status, drep.Handover, dst.resumed, derr)
				}
				if side == "source" && !errors.Is(serr, inner) || side == "destination" && !errors.Is(derr, inner) {
					t.Errorf("the VMM's error is no longer wrapped: a caller's errors.Is on it fails")
				}
			})
		}
	}
}
