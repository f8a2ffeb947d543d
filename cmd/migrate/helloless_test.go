package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveOlderBesideHelloless: two id-less sides, one from a VMM
// older than control version 2 (it reports no tag fingerprint, whatever
// it did) and one from a VMM of version 2 or later that reports none (so
// it sent or took no HELLO), are not paired when the older side stands
// where only a HELLO leads (a source handover-unknown, migrated or
// post-copy-broken; a destination handover-unknown, discarded, running
// or post-copy-broken): the newer side is provably not its partner, and
// a plan on it would resume a handover-unknown source beside a
// stranger's failure (its real destination may run the guest: twice),
// or discard a handover-unknown destination, perhaps the only copy of a
// guest whose source is elsewhere, beside a stranger's running source.
// Nothing is moved, and migrate says why. Two older sides pair as before
// (paired by the absence of an id, said), and so does an older side that
// no HELLO need have led to. Found by review C walking the pairs that
// reach an unnamed side: pair took the absence of a fingerprint on the
// newer side for the older side's "cannot tell".
func TestResolveOlderBesideHelloless(t *testing.T) {
	const older = api.TagsReported - 1
	for _, tc := range []struct {
		name       string
		set        func(c *runCase)
		src, dst   string // the acts each side is asked for
		ok, paired bool   // exit 0; the two paired (said)
	}{
		{"older source handover-unknown, newer destination failed", func(c *runCase) {
			c.src.controlV = older
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, "", "", false, false},
		{"older source handover-unknown, newer destination failing", func(c *runCase) {
			c.src.controlV = older
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.progress = engine.Progress{Phase: engine.PhaseSetup, Handover: engine.HandoverFailed}
		}, "", "", false, false},
		{"newer source running, older destination handover-unknown", func(c *runCase) {
			c.dst.controlV = older
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, "", "", false, false},
		{"newer source still migrating, older destination handover-unknown", func(c *runCase) {
			c.dst.controlV = older
			c.src.running = true
			c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
		}, "", "", false, false},
		{"both older: as before", func(c *runCase) {
			c.src.controlV, c.dst.controlV = older, older
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, "resolve resume ", "", true, true},
		{"older source running, newer destination failed: as before", func(c *runCase) {
			c.src.controlV = older
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
		}, "", "", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			code, _, stderr := c.resolveMain(t)
			c.wantAsked(t, tc.src, tc.dst)
			if (code == 0) != tc.ok {
				t.Errorf("exit %d, want success %v", code, tc.ok)
			}
			if said := strings.Contains(stderr, "paired by the absence of an id"); said != tc.paired {
				t.Errorf("said paired by the absence of an id: %v, want %v", said, tc.paired)
			}
			if !tc.paired {
				wantSays(t, stderr, "no HELLO), and the") // why the two are not paired
			}
		})
	}
}

// TestResolveMisreportedHello: two id-less sides from VMMs that report
// tag fingerprints (control version 2 or later), both reporting none,
// where one stands where only a HELLO leads (a source handover-unknown,
// migrated or post-copy-broken; a destination handover-unknown,
// discarded, running or post-copy-broken). Such a VMM reports the
// fingerprint from the HELLO on, so this one misreports: nothing it says
// names the migration its copy came from or went to, nothing shows the
// other side to be its partner, and every act on it would name no
// migration. migrate -resolve moves neither side (no resume beside a
// failure that may be a stranger's: two running copies; no discard of
// a copy that may be the only one; no quit), prints no command that
// would name nothing, says what the operator must find out, and exits
// 1. Two sides that both stand where no HELLO need have led (a running
// source, a failed destination) still pair by "" == "". Found by the
// walk of unnamed acts (resolvecancel.go): such a pair was acted on
// unnamed, paired by "" == "".
func TestResolveMisreportedHello(t *testing.T) {
	// What each side reports once its migration ended.
	type ended struct {
		status engine.Status
		side   api.Side
	}
	var (
		unknown        = ended{engine.StatusHandoverUnknown, api.SideUnknown}
		failed         = ended{engine.StatusFailed, api.SideFailed}
		sourceRunning  = ended{engine.StatusFailed, api.SideRunning} // its migration failed
		migrated       = ended{engine.StatusCompleted, api.SideMigrated}
		postcopyBroken = ended{engine.StatusPostcopyBroken, api.SidePostcopyBroken}
		destRunning    = ended{engine.StatusCompleted, api.SideRunning}
	)
	for _, tc := range []struct {
		name     string
		src, dst ended
		ok       bool // exit 0, nothing to move
	}{
		{"source running, destination handover-unknown", sourceRunning, unknown, false},
		{"source handover-unknown, destination failed", unknown, failed, false},
		{"both handover-unknown", unknown, unknown, false},
		{"source migrated, destination handover-unknown", migrated, unknown, false},
		{"source post-copy-broken, destination running", postcopyBroken, destRunning, false},
		{"source running, destination failed: no HELLO, paired", sourceRunning, failed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.finishWith(0, tc.src.status, tc.src.side)
			c.dst.finishWith(0, tc.dst.status, tc.dst.side)
			code, _, stderr := c.resolveMain(t)
			c.wantNothingAsked(t)
			if (code == 0) != tc.ok {
				t.Errorf("exit %d, want success %v", code, tc.ok)
			}
			if tc.ok {
				return
			}
			wantSays(t, stderr, "but no tag fingerprint", "misreports") // which side misreports
			wantNoCommand(t, stderr, "one that could name no migration")
		})
	}
}
