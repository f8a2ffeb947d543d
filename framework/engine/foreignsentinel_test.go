package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
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

// TestCancelledForeignSentinel: a side is cancelled before any hold,
// and the VMM call it is in (SaveState on the source, LoadState on the
// destination) then fails with an error of the VMM's own that wraps one
// of the engine's sentinels. The side's handover ends failed, and its
// Report.Status must say cancelled, as for any other error a cancel
// meets (heldCtx.cancelled), whatever that error wraps; Send's or
// Receive's error wraps context.Canceled and still the VMM's. Before,
// heldCtx.cancelled judged the error by status alone: it took a foreign
// ErrPostcopyCheck for completed, ErrHandoverUnknown and
// ErrPostcopyBroken for those, left the error unmarked, and the side
// reported failed (reportStatus).
// A plain VMM error (no sentinel) is the control: cancelled before too.
func TestCancelledForeignSentinel(t *testing.T) {
	plain := errors.New("the VMM's own failure")
	for _, inner := range []error{plain, ErrPostcopyCheck, ErrHandoverUnknown, ErrPostcopyBroken} {
		for _, side := range []string{"source", "destination"} {
			t.Run(fmt.Sprintf("%s/%v", side, inner), func(t *testing.T) {
				src, dst := twoRegions(t)
				for p := uint64(0); p < src.layout.Pages(); p++ {
					src.write(p, 0x22)
				}
				foreign := fmt.Errorf("vmm: an earlier migration's end: %w", inner)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cctx, cancelSide := context.WithCancel(ctx)
				defer cancelSide()
				sctx, rctx := ctx, ctx
				if side == "source" {
					sctx = cctx
					src.failSave, src.onSave = foreign, cancelSide
				} else {
					rctx = cctx
					dst.failLoad, dst.onLoad = foreign, cancelSide
				}
				s, r := newPipe(src, dst)
				var drep Report
				var derr error
				var wg sync.WaitGroup
				wg.Go(func() { drep, derr = Receive(rctx, dst, r, Options{}) })
				srep, serr := Send(sctx, src, s, Options{})
				wg.Wait()
				t.Logf("source: %s, %s: %v\ndestination: %s, %s: %v", srep.Status, srep.Handover, serr,
					drep.Status, drep.Handover, derr)
				rep, err := srep, serr
				if side == "destination" {
					rep, err = drep, derr
				}
				if rep.Status != StatusCancelled || rep.Handover != HandoverFailed {
					t.Errorf("%s: status %s, handover %s; want cancelled, failed", side, rep.Status, rep.Handover)
				}
				if !errors.Is(err, context.Canceled) || !errors.Is(err, inner) {
					t.Errorf("%s: %v; want it to wrap context.Canceled and the VMM's error", side, err)
				}
				if src.paused || dst.resumed != 0 {
					t.Errorf("source paused %v, destination resumed %d times; want the source running, the destination never",
						src.paused, dst.resumed)
				}
			})
		}
	}
}
