package engine

import (
	"runtime"
	"testing"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// Without the page check (no HASHES: VerifyPages off, the normal case)
// the post-copy land check keeps the absent pages' bitmap and nothing
// else a page: every post-copy builds one, and its verdict is read at
// COMMIT, between COMMIT and Resume (receiver.commitRefused), where a
// walk over guest RAM's pages is downtime. Until 2026-12-07 it also
// built a bitmap of differing pages, a bit a page, which the verdict
// counted at COMMIT: for a 1 TiB guest 32 MiB never written, read in
// full there (over 200 ms on a loaded test host, the first time).
func TestLandCheckUncheckedCostsNoPages(t *testing.T) {
	const pages = 1 << 27 // 512 GiB of guest RAM
	l := framework.Layout{{Size: pages * framework.PageSize}}
	bitmapBytes := uint64(pages / 8)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newLandCheck(l, []pageRun{{First: 0, Count: pages}}, func(p, h, want uint64) {})
	if err := c.landed(transport.PageRun{First: 5, Count: 3, Kind: transport.KindZero}); err != nil {
		t.Fatal(err)
	}
	bad, first := c.verdict()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	if bad != 0 || first != ^uint64(0) {
		t.Errorf("verdict %d, %d with no HASHES; want 0, none", bad, first)
	}
	// The absent bitmap, the page buffer, a margin for the test's own
	// allocations: well under a second bitmap.
	if got, limit := after.TotalAlloc-before.TotalAlloc, bitmapBytes+bitmapBytes/2; got > limit {
		t.Errorf("the land check of a %d-page guest without HASHES allocated %d bytes; want at most %d "+
			"(the absent bitmap is %d)", uint64(pages), got, limit, bitmapBytes)
	}
}

// With HASHES, a page that lands differing is counted once, however
// often it lands: the verdict is pages, not landings.
func TestLandCheckCountsPagesOnce(t *testing.T) {
	l := framework.Layout{{Size: 64 * framework.PageSize}}
	var logged int
	c := newLandCheck(l, []pageRun{{First: 0, Count: 64}}, func(p, h, want uint64) { logged++ })
	for p := uint64(0); p < 64; p++ {
		if !c.deferHash(p, 12345) { // no page hashes to this: a zero run differs
			t.Fatalf("page %d held, want absent", p)
		}
	}
	for range 3 {
		if err := c.landed(transport.PageRun{First: 7, Count: 2, Kind: transport.KindZero}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.landed(transport.PageRun{First: 3, Count: 1, Kind: transport.KindZero}); err != nil {
		t.Fatal(err)
	}
	if bad, first := c.verdict(); bad != 3 || first != 3 || logged != 3 {
		t.Errorf("verdict %d, first %d, %d logged; want 3, 3, 3", bad, first, logged)
	}
}
