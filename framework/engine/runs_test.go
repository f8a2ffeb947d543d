package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// TestRunListRoundTrip: a run list survives encoding in chunks, and each
// malformed chunk is refused as malformed.
func TestRunListRoundTrip(t *testing.T) {
	const pages = 1000
	want := []pageRun{{0, 1}, {5, 10}, {100, 900}}
	a := encodeRuns(want[:2], false)
	b := encodeRuns(want[2:], true)
	got, last, after, err := decodeRuns(nil, a, pages, 0)
	if err != nil || last || after != 15 {
		t.Fatalf("first chunk: %v last=%v after=%d", err, last, after)
	}
	got, last, after, err = decodeRuns(got, b, pages, after)
	if err != nil || !last || after != pages || len(got) != 3 || got[2] != want[2] {
		t.Fatalf("second chunk: %v last=%v after=%d runs %v", err, last, after, got)
	}
	bad := map[string][]byte{
		"short":        {1, 0, 0},
		"empty run":    encodeRuns([]pageRun{{3, 0}}, true),
		"beyond RAM":   encodeRuns([]pageRun{{999, 2}}, true),
		"overlap":      encodeRuns([]pageRun{{0, 5}, {4, 1}}, true),
		"wrap":         encodeRuns([]pageRun{{1, ^uint64(0)}}, true),
		"unknown flag": append([]byte{2, 0, 0, 0}, encodeRuns(nil, false)[4:]...),
		"count/length": encodeRuns([]pageRun{{0, 1}}, true)[:20],
	}
	for name, b := range bad {
		if _, _, _, err := decodeRuns(nil, b, pages, 0); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	if _, _, _, err := decodeRuns(nil, encodeRuns([]pageRun{{3, 1}}, true), pages, 10); !errors.Is(err, errMalformed) {
		t.Errorf("a chunk going backwards: %v", err)
	}
}

// TestReady: READY's flags and reason round-trip and are bounded.
func TestReady(t *testing.T) {
	f, why, err := decodeReady(encodeReady(readyPostcopy, ""))
	if err != nil || f != readyPostcopy || why != "" {
		t.Fatalf("%v %v %q", err, f, why)
	}
	long := string(make([]byte, 2*maxReadyReason))
	if _, why, err := decodeReady(encodeReady(0, long)); err != nil || len(why) != maxReadyReason {
		t.Fatalf("long reason: %v, %d bytes", err, len(why))
	}
	if _, _, err := decodeReady(nil); !errors.Is(err, errMalformed) {
		t.Fatalf("empty READY: %v", err)
	}
}

// FuzzDecodeRuns: a run-list chunk as a peer sends it (the pages a
// destination holds, post-copy's runs) for a guest of any size, after
// any page. What decodes is runs that are non-empty, increasing from
// after without overlap, inside RAM, that encode back to the same bytes;
// POSTCOPY's chunk decodes as its run list; anything else is malformed.
func FuzzDecodeRuns(f *testing.F) {
	f.Add(uint64(1000), uint64(0), encodeRuns([]pageRun{{0, 1}, {5, 10}}, false))
	f.Add(uint64(1000), uint64(15), encodeRuns([]pageRun{{100, 900}}, true))
	f.Add(uint64(1<<40), uint64(0), encodeRuns([]pageRun{{1, ^uint64(0)}}, true))
	f.Fuzz(func(t *testing.T, pages, after uint64, b []byte) {
		runs, last, end, err := decodeRuns(nil, b, pages, after)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error is not malformed: %v", err)
			}
			return
		}
		prev := after
		for _, r := range runs {
			if r.Count == 0 || r.First < prev || r.First > pages || r.Count > pages-r.First {
				t.Fatalf("run %d+%d accepted after page %d in a guest of %d pages", r.First, r.Count, prev, pages)
			}
			prev = r.First + r.Count
		}
		if end != prev {
			t.Fatalf("chunk ends at %d, its last run at %d", end, prev)
		}
		if again := encodeRuns(runs, last); !bytes.Equal(again, b) {
			t.Fatalf("runs %v re-encode as %x, not %x", runs, again, b)
		}
		pc := append(binary.LittleEndian.AppendUint64(nil, 7), b...)
		pruns, plast, pend, queued, err := decodePostcopy(nil, pc, pages, after)
		if err != nil || queued != 7 || plast != last || pend != end || !reflect.DeepEqual(pruns, runs) {
			t.Fatalf("POSTCOPY of the same runs: %v %v %d %d %v", err, pruns, pend, queued, plast)
		}
	})
}
