package engine

import (
	"errors"
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
