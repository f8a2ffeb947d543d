package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// lyingRuns are landed runs no transport may report for a guest of 64
// pages: beyond its end, wrapping past 2^64, empty, of no kind.
var lyingRuns = map[string]transport.PageRun{
	"beyond":     {First: 64, Count: 1, Kind: transport.KindData},
	"straddling": {First: 60, Count: 8, Kind: transport.KindZero},
	"wrapping":   {First: 40, Count: ^uint64(0) - 20, Kind: transport.KindZero},
	"empty-past": {First: 67, Count: 0, Kind: transport.KindData},
	"no-kind":    {First: 3, Count: 1},
}

// The landed lane refuses a batch with a run that is not guest RAM's:
// nothing of the batch is counted or handed on, and the lane ends with
// errLandedInvalid as the fault service's refusal ends it (fatal). It
// handed such a run on, counted, to the page check, which ran past the
// end of its bitmap (an index out of range for a guest whose page count
// is a multiple of 64, else a loop that never ended) and to the fault
// service.
func TestLandedFeedRefusesOutsideRAM(t *testing.T) {
	for name, lie := range lyingRuns {
		t.Run(name, func(t *testing.T) {
			tr := landedOnly{c: make(chan []transport.PageRun, 1)}
			var handed []transport.PageRun
			f := newLandedFeed(64, func(runs []transport.PageRun) error { handed = append(handed, runs...); return nil })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tr.c <- []transport.PageRun{{First: 0, Count: 2, Kind: transport.KindData}, lie}
			close(tr.c) // then the session's end (ErrClosed)
			go f.run(ctx, tr)
			<-f.done
			if !errors.Is(f.err, errLandedInvalid) || !f.fatal || f.got != 0 || len(handed) != 0 {
				t.Fatalf("lane ended with %v (fatal %v), %d pages counted, handed %v", f.err, f.fatal, f.got, handed)
			}
		})
	}
}

// A destination whose transport reports a landed run outside guest RAM
// before the switch fails it (the VM never runs here; ABORT tells the
// source, which resumes); after COMMIT post-copy breaks, the VM halted.
// Either way with errLandedInvalid's reason, never a panic or a hang:
// the run reached the page check, which ran past its bitmap
// (FuzzPostcopyReceive's seeds; the beyond case panicked with an index
// out of range).
func TestPostcopyLandedOutsideRAM(t *testing.T) {
	needUffd(t)
	for name, lie := range lyingRuns {
		for _, when := range []string{"before-switch", "after-commit"} {
			t.Run(name+"/"+when, func(t *testing.T) {
				hello, pre, postcopy, state, commit, owed := pcFuzzSession()
				items := []pcFuzzItem{hello, pcLand(lie), pre, postcopy, state, commit, owed} // the lane ends before it reported the pages queued
				if when == "after-commit" {
					items = []pcFuzzItem{hello, pre, postcopy, state, commit, pcLand(lie), owed}
				}
				z := newPCFuzz(t, [][]pcFuzzItem{items})
				opt := Options{SwitchoverTimeout: time.Second, StallTimeout: time.Second,
					ReconnectTimeout: 300 * time.Millisecond, Log: testLogger(t)}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, z.transport(), opt)
				if err == nil || !strings.Contains(err.Error(), errLandedInvalid.Error()) {
					t.Fatalf("Receive: %v", err)
				}
				z.mu.Lock()
				defer z.mu.Unlock()
				took := when
				if when == "after-commit" && rep.Handover == HandoverFailed {
					// A batch is released once COMMIT was read, not once
					// it was taken: the lane may refuse the lie before
					// the receiver moved to committing. Then the switch
					// fails before the VM ran here, which must hold as it
					// does before the switch (a CI run saw it: no-kind).
					took = "before-switch"
				}
				if took == "before-switch" {
					if rep.Handover != HandoverFailed || z.vm.resumed != 0 || z.halted || !sentKind(z.sent, msgAbort) {
						t.Errorf("handover %s, resumed %d, halted %v, sent %v", rep.Handover, z.vm.resumed, z.halted, z.sent)
					}
					return
				}
				if !errors.Is(err, ErrPostcopyBroken) || rep.Handover != HandoverPostcopyBroken || !z.halted {
					t.Errorf("after COMMIT: %v, handover %s, halted %v", err, rep.Handover, z.halted)
				}
			})
		}
	}
}

// pcFuzzSession is FuzzPostcopyReceive's first seed in parts: HELLO,
// the pre-copy pages (all but 10-13 and 40-41), POSTCOPY, STATE,
// COMMIT and the owed pages.
func pcFuzzSession() (hello, pre, postcopy, state, commit, owed pcFuzzItem) {
	items := parsePCFuzz(pcFuzzSeeds()[0])[0]
	owed = pcLand(append(append([]transport.PageRun(nil), items[5].runs...), items[6].runs...)...)
	return items[0], items[1], items[2], items[3], items[4], owed
}

func sentKind(sent []uint32, kind uint32) bool {
	for _, k := range sent {
		if k == kind {
			return true
		}
	}
	return false
}
