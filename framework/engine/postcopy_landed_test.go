package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// lyingRuns are landed runs no transport may report for a guest of 64
// pages that the engine refuses: beyond its end, wrapping past 2^64,
// empty past its end, of no kind over a page the destination holds
// (page 3 came before POSTCOPY).
var lyingRuns = map[string]transport.PageRun{
	"beyond":       {First: 64, Count: 1, Kind: transport.KindData},
	"straddling":   {First: 60, Count: 8, Kind: transport.KindZero},
	"wrapping":     {First: 40, Count: ^uint64(0) - 20, Kind: transport.KindZero},
	"empty-past":   {First: 67, Count: 0, Kind: transport.KindData},
	"no-kind-held": {First: 3, Count: 1},
}

// claimlessRuns break the contract too, but claim nothing the engine
// could act on: empty inside guest RAM or at its end, and (once the
// fault service is on) of no kind over owed pages (10-13, 40-41).
var claimlessRuns = map[string]transport.PageRun{
	"empty-inside": {First: 3, Count: 0, Kind: transport.KindData},
	"empty-at-end": {First: 64, Count: 0, Kind: transport.KindZero},
	"empty-nokind": {First: 5, Count: 0},
	"no-kind-owed": {First: 10, Count: 2, Kind: 9},
}

// The landed lane drops runs that claim nothing it could act on,
// counts them and tells onDrop (the warning) of each, and hands the
// runs around them on in order; a run of no kind over pages not all
// awaited ends it (fatal), after the runs before it were handed on.
func TestLandedFeedDropsClaimless(t *testing.T) {
	tr := landedOnly{c: make(chan []transport.PageRun, 2)}
	var handed []transport.PageRun
	var told []uint64
	f := newLandedFeed(64, func(runs []transport.PageRun) error { handed = append(handed, runs...); return nil })
	f.awaited = func(first, count uint64) bool { return first >= 10 && first+count <= 14 }
	f.onDrop = func(r transport.PageRun, why string, n uint64) { told = append(told, n) }
	data := func(first uint64) transport.PageRun {
		return transport.PageRun{First: first, Count: 1, Kind: transport.KindData}
	}
	tr.c <- []transport.PageRun{data(0), claimlessRuns["empty-inside"], claimlessRuns["empty-at-end"], data(1),
		claimlessRuns["empty-nokind"], claimlessRuns["no-kind-owed"], data(12)}
	tr.c <- []transport.PageRun{data(20), {First: 13, Count: 2}, data(21)} // page 14 is not awaited
	close(tr.c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go f.run(ctx, tr)
	<-f.done
	want := []transport.PageRun{data(0), data(1), data(12), data(20)}
	if !errors.Is(f.err, errLandedInvalid) || !f.fatal || !slices.Equal(handed, want) || f.got != 4 ||
		f.dropped != 4 || !slices.Equal(told, []uint64{1, 2, 3, 4}) {
		t.Fatalf("lane ended with %v (fatal %v), handed %v, %d pages counted, %d dropped, told %v",
			f.err, f.fatal, handed, f.got, f.dropped, told)
	}
}

// A destination whose transport reports a run that claims nothing the
// engine could act on survives it: the run is dropped, counted in the
// report, and post-copy completes with the VM running, before the
// switch (empty runs only: one of no kind then fails the switch, which
// costs the guest nothing) and after COMMIT. Every such run halted the
// VM after COMMIT before, as one outside guest RAM does.
func TestPostcopyLandedClaimless(t *testing.T) {
	needUffd(t)
	for name, lie := range claimlessRuns {
		for _, when := range []string{"before-switch", "after-commit"} {
			t.Run(name+"/"+when, func(t *testing.T) {
				hello, pre, postcopy, state, commit, owed := pcFuzzSession()
				items := []pcFuzzItem{hello, pcLand(lie), pre, postcopy, state, commit, owed}
				if when == "after-commit" {
					items = []pcFuzzItem{hello, pre, postcopy, state, commit, pcLand(lie), owed}
				}
				z := newPCFuzz(t, [][]pcFuzzItem{items})
				opt := Options{SwitchoverTimeout: time.Second, StallTimeout: time.Second,
					ReconnectTimeout: 300 * time.Millisecond, Log: testLogger(t)}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, z.transport(), opt)
				z.mu.Lock()
				defer z.mu.Unlock()
				if lie.Count != 0 && when == "before-switch" {
					if err == nil || !strings.Contains(err.Error(), errLandedInvalid.Error()) ||
						rep.Handover != HandoverFailed || z.vm.resumed != 0 || z.halted {
						t.Fatalf("no kind before the switch: %v, handover %s, resumed %d, halted %v", err, rep.Handover, z.vm.resumed, z.halted)
					}
					return
				}
				if err != nil || rep.Handover != HandoverRunning || z.halted || rep.LandedRunsDropped != 1 {
					t.Fatalf("Receive: %v, handover %s, halted %v, dropped %d", err, rep.Handover, z.halted, rep.LandedRunsDropped)
				}
			})
		}
	}
}

// A run of no kind over an owed page is not taken for the page: a
// fault on it waits (it is requested), and only a valid copy, here
// sent again after a reconnect (MISSING names it), ends the wait; the
// guest reads that copy, not what the run wrote.
func TestPostcopyNoKindOwedWaits(t *testing.T) {
	needUffd(t)
	hello, pre, postcopy, state, commit, _ := pcFuzzSession()
	s1 := []pcFuzzItem{hello, pre, postcopy, state, commit, pcLand(transport.PageRun{First: 10, Count: 4}),
		{op: pcItemTouch, page: 11}, pcLand(transport.PageRun{First: 40, Count: 2, Kind: transport.KindZero})}
	s2 := []pcFuzzItem{pcMsg(msgResume, encodeResume(64, pcFuzzTag)),
		pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindData}), pcMsg(msgSettled, nil)}
	z := newPCFuzz(t, [][]pcFuzzItem{s1, s2})
	opt := Options{SwitchoverTimeout: time.Second, StallTimeout: 300 * time.Millisecond,
		ReconnectTimeout: 5 * time.Second, Log: testLogger(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, z.transport(), opt)
	z.touches.Wait()
	z.mu.Lock()
	defer z.mu.Unlock()
	if err != nil || rep.Handover != HandoverRunning || z.halted || rep.Reconnects != 1 || rep.LandedRunsDropped != 1 {
		t.Fatalf("Receive: %v, handover %s, halted %v, reconnects %d, dropped %d",
			err, rep.Handover, z.halted, rep.Reconnects, rep.LandedRunsDropped)
	}
	if z.requests == 0 {
		t.Fatal("the guest's touch of page 11 asked for nothing: the run of no kind was taken for the page")
	}
	if got := binary.LittleEndian.Uint64(z.guest[0][11*framework.PageSize:]); got != 12 {
		t.Fatalf("the guest reads %#x at page 11, not the valid copy's 12", got)
	}
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

// A transport plugin that reports the same owed pages of no kind in
// session after session keeps post-copy from completing, and nothing
// ends it (halting the guest would lose it): the destination says so
// as an error from the second report of a page on, once a session, so
// that the operator learns to replace the plugin, which a reconnect
// starts again. Here the third session's plugin reports the pages as
// data and post-copy completes. The warning alone, once a session,
// said neither before.
func TestPostcopyNoKindAgainSaid(t *testing.T) {
	needUffd(t)
	hello, pre, postcopy, state, commit, _ := pcFuzzSession()
	noKind := pcLand(transport.PageRun{First: 10, Count: 4})
	resume := pcMsg(msgResume, encodeResume(64, pcFuzzTag))
	s1 := []pcFuzzItem{hello, pre, postcopy, state, commit, noKind,
		pcLand(transport.PageRun{First: 40, Count: 2, Kind: transport.KindZero})}
	s2 := []pcFuzzItem{resume, noKind, pcLand(transport.PageRun{First: 11, Count: 1})}
	s3 := []pcFuzzItem{resume, pcLand(transport.PageRun{First: 10, Count: 4, Kind: transport.KindData}), pcMsg(msgSettled, nil)}
	z := newPCFuzz(t, [][]pcFuzzItem{s1, s2, s3})
	var mu sync.Mutex
	var said []int64 // the session of each error logged
	log := slog.New(onRecord{Handler: testLogger(t).Handler(), on: func(r slog.Record) {
		if r.Level < slog.LevelError {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var session int64 = -1
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "session" {
				session = a.Value.Int64()
			}
			return true
		})
		said = append(said, session)
	}})
	opt := Options{SwitchoverTimeout: time.Second, StallTimeout: 300 * time.Millisecond,
		ReconnectTimeout: 5 * time.Second, Log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Receive(ctx, pcFuzzTarget{fakeVM: z.vm, z: z}, z.transport(), opt)
	z.mu.Lock()
	defer z.mu.Unlock()
	if err != nil || rep.Handover != HandoverRunning || z.halted || rep.Reconnects != 2 || rep.LandedRunsDropped != 3 {
		t.Fatalf("Receive: %v, handover %s, halted %v, reconnects %d, dropped %d",
			err, rep.Handover, z.halted, rep.Reconnects, rep.LandedRunsDropped)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(said, []int64{2}) {
		t.Fatalf("errors logged in sessions %v, want one in session 2", said)
	}
}
