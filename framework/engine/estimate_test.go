package engine

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// zeroingGuest is a source of 64 MiB (16 384 pages) whose first data
// pages hold data and the rest are populated zero pages, and whose guest
// writes the data pages again and zeroes the others between every two
// dirty syncs (a buffer it clears, pages its kernel zeroes on free).
func zeroingGuest(t *testing.T, data uint64) (src, dst *fakeVM) {
	src, dst, _ = outrunGuest(t, 64*mib, data)
	clear(src.mem[data*framework.PageSize:]) // populated, all zero: zero runs, not holes
	pages := src.layout.Pages()
	src.onSync = func(int) {
		src.mu.Lock()
		src.dirty.SetRange(0, pages)
		src.mu.Unlock()
	}
	return src, dst
}

// TestEstimateZeroPagesConverge: the zeroing guest behind a link that
// moves 2048 data pages a second. Each pass sends its 512 data pages in
// about 250 ms, and the zero pages as zero runs, which cost the link
// nothing: so would the final pass, well within max_downtime (2 s).
// Pre-copy must switch over after the first dirty pass (3 passes with
// the final one), and in mode "auto" must not switch to post-copy.
// Charging every dirty page at the data rate (8 s) ran to max_passes
// (mode "off": 5 passes) or switched to post-copy after pass 2 (mode
// "auto": 16 384 pages dirtied, 512 sent).
func TestEstimateZeroPagesConverge(t *testing.T) {
	opt := Options{MaxDowntime: 2 * time.Second, MaxPasses: 4, SwitchoverTimeout: 10 * time.Second}
	slow := func(tr transport.Transport) transport.Transport { return &slowLink{Transport: tr, pagesPerSec: 2048} }
	t.Run("off", func(t *testing.T) {
		src, dst := zeroingGuest(t, 512)
		srep, serr, _, rerr := sendOver(t, src, dst, opt, slow)
		if serr != nil || rerr != nil {
			t.Fatalf("send %v / receive %v", serr, rerr)
		}
		if srep.Status != StatusCompleted || srep.Passes != 3 {
			t.Errorf("status %s after %d passes; want completed after 3 (bulk, one dirty pass, the final one): "+
				"each pass's 512 data pages take ~250 ms", srep.Status, srep.Passes)
		}
		if !bytes.Equal(src.mem, dst.mem) {
			t.Error("the destination's RAM differs from the source's")
		}
	})
	t.Run("auto", func(t *testing.T) {
		src, _ := zeroingGuest(t, 512)
		o := opt
		o.Postcopy = PostcopyAuto
		d, r := runPostcopy(t, src, o, func(d *scriptDst) { d.wrapSrc = slow })
		if r.serr != nil || r.derr != nil {
			t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
		}
		if r.srep.Mode != ModePrecopy || r.srep.Passes != 3 {
			t.Errorf("mode %q after %d passes; want pre-copy after 3: the final pass's 512 data pages take ~250 ms; log:\n%s",
				r.srep.Mode, r.srep.Passes, r.logs)
		}
		if !bytes.Equal(src.mem, d.vm.mem) {
			t.Error("the destination's RAM differs from the source's")
		}
	})
}

// TestEstimateHintedDataCharged: a guest whose 16 384 pages all hold
// data and are all written again between the first three dirty syncs,
// then no more, with a "free" hint provider that marks all but the
// first 256 in every generation, behind a link that moves 2048 data
// pages a second. Each live pass sends 256 pages and skips the rest;
// the final pass applies no hints and would send all 16 384 that hold
// data (8 s). The estimate after the first dirty pass must charge them
// (at least 8 s, above max_downtime 1 s), so pre-copy goes on: the next
// pass's pages are hinted again, nothing is written after it, and the
// switch-over sends nothing. Counting hinted pages as free (the live
// pass's share, 256 of 16 384) estimated about 130 ms, paused the guest
// after pass 2, and its final pass ran into switchover_timeout (2 s).
func TestEstimateHintedDataCharged(t *testing.T) {
	const size, sent = 64 * mib, 256
	src, dst, pauses := outrunGuest(t, size, 0)
	pages := src.layout.Pages()
	src.onSync = func(n int) { // n 1, 2: written for passes 2 and 3; 3: the pages after pass 3, none
		if n <= 2 {
			src.mu.Lock()
			src.dirty.SetRange(0, pages)
			src.mu.Unlock()
		}
	}
	prov := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
		return emit([]hint.Range{{First: sent, Count: pages - sent}})
	}}
	est := &passEstimates{}
	opt := Options{MaxDowntime: time.Second, MaxPasses: 10, SwitchoverTimeout: 2 * time.Second,
		HintHold: 5 * time.Second, // every pass takes its hints before its first page
		Hints:    []HintSource{source("free", prov, time.Second)}, Log: slog.New(est)}
	srep, serr, _, rerr := sendOver(t, src, dst, opt, func(tr transport.Transport) transport.Transport {
		return &slowLink{Transport: tr, pagesPerSec: 2048}
	})
	e := est.get()
	t.Logf("estimates %v", e)
	// The link moves at most 2048 data pages a second: the measured rate
	// is no faster, and 16 384 pages at it take at least 8 s.
	dataCost := time.Duration(pages) * time.Second / 2048
	if len(e) < 2 || e[1] < dataCost {
		t.Errorf("estimate after the first dirty pass %v, want at least %v: its 16 384 dirty pages hold data, "+
			"and the final pass applies no hints", e, dataCost)
	}
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if n := pauses.Load(); n != 1 || srep.Status != StatusCompleted || srep.Passes != 4 {
		t.Errorf("paused %d times, status %s after %d passes; want 1, completed after 4 (3 live, the final one empty)",
			n, srep.Status, srep.Passes)
	}
	if srep.PagesSkipped < 3*(pages-sent) {
		t.Errorf("skipped %d pages, want every live pass to skip the %d hinted", srep.PagesSkipped, pages-sent)
	}
}

// TestFreeInFinal: of a live pass's runs, the final pass (no hints)
// would send as zero runs too the zero pages and holes and the pages a
// "zero" hint's check found zero; the pages a "free" or "unused" hint
// let the pass skip unread may hold data, and the data runs (a "zero"
// hint's wrong pages among them) do.
func TestFreeInFinal(t *testing.T) {
	srcs := []HintSource{{Name: "free", Meaning: hint.MeaningFree}, {Name: "zero", Meaning: hint.MeaningZero},
		{Name: "unused", Meaning: hint.MeaningUnused}}
	s := &sender{hints: newHinter(srcs, 16, func(string, ...any) {})}
	for _, tc := range []struct {
		r    run
		free bool
	}{
		{run{kind: runZero}, true},
		{run{kind: runHole}, true},
		{run{kind: runHinted, who: 1}, true},
		{run{kind: runHinted, who: 0}, false},
		{run{kind: runHinted, who: 2}, false},
		{run{kind: runData}, false},
		{run{kind: runWrong, who: 1}, false},
	} {
		if got := s.freeInFinal(tc.r); got != tc.free {
			t.Errorf("run %+v (%s): free in the final pass %v, want %v", tc.r, srcs[tc.r.who].Name, got, tc.free)
		}
	}
}

// TestEstimateZeroReadCharged: a guest of 128 MiB, every page populated
// and all zero, that zeroes all of them again between every two dirty
// syncs (a large buffer it clears). No pass sends data; the final pass
// reads each of the 32 768 dirty pages to find it zero, with the guest
// paused, which takes milliseconds (BenchmarkOwedClassify zero: ~0.15
// us a page, 5 ms here), above max_downtime (3 ms). The estimate must
// charge that read: pre-copy runs to max_passes (4) and only then
// forces the switch (5 passes with the final one). Charging zero pages
// nothing (the estimate then ignores how many are dirty) paused the
// guest after the first dirty pass (3 passes), and the final pass's
// reading broke max_downtime. The link reports its own round trip
// (tcp: the kernel's), as a real one would: the estimate charges that,
// not the last Flush's wait (rttMeter).
func TestEstimateZeroReadCharged(t *testing.T) {
	const size = 128 * mib
	src, dst, pauses := outrunGuest(t, size, 1)
	clear(src.mem) // populated, all zero: zero runs, not holes
	pages := src.layout.Pages()
	src.onSync = func(int) {
		src.mu.Lock()
		src.dirty.SetRange(0, pages)
		src.mu.Unlock()
	}
	est := &passEstimates{}
	opt := Options{MaxDowntime: 3 * time.Millisecond, MaxPasses: 4, SwitchoverTimeout: 10 * time.Second, Log: slog.New(est)}
	srep, serr, _, rerr := sendOver(t, src, dst, opt, func(tr transport.Transport) transport.Transport {
		return &measuredRTT{Transport: tr, rtt: 50 * time.Microsecond}
	})
	t.Logf("estimates %v, downtime %d ms", est.get(), srep.DowntimeMS)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if n := pauses.Load(); n != 1 || srep.Status != StatusCompleted || srep.Passes != 5 {
		t.Errorf("paused %d times, status %s after %d passes; want 1, completed after 5 (max_passes 4, then the forced switch): "+
			"reading %d dirty zero pages at the pause takes longer than max_downtime", n, srep.Status, srep.Passes, pages)
	}
	if !bytes.Equal(src.mem, dst.mem) {
		t.Error("the destination's RAM differs from the source's")
	}
}

// measuredRTT is a link whose transport measures its round trip itself
// (transport.Stats.RTT), as tcp reports the kernel's.
type measuredRTT struct {
	transport.Transport
	rtt time.Duration
}

func (l *measuredRTT) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := l.Transport.Stats(ctx)
	st.RTT = l.rtt
	return st, err
}
