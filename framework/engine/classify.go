package engine

import (
	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/transport"
)

// Page classification, in one place (docs/ARCHITECTURE.md, "The path of
// one page"). A pass hands the classifier its to-send bitmap; the
// classifier walks it in page order and yields typed runs; the send loop
// (sendPass) only counts them and hands them to the transport.
//
//	to-send bitmap ─► set stretch (NextSetIn/NextClearIn, word at a time)
//	  hinter marks  ─► hinted run (one provider; "zero" hints checked)
//	  memfd holes   ─► hole run   (SEEK_DATA/SEEK_HOLE: one query per extent)
//	  page contents ─► zero run / data run (isZero, populated pages only)
//
// Hinted stretches and holes cost their bitmap words and one query each,
// never a step per page; only populated pages are read. Data runs are
// bounded by the caller's budget, so a hint that arrives between two runs
// applies to every page not yet classified.

// runKind is what the classifier found a run of pages to be. 0 is invalid.
type runKind uint8

const (
	runHinted runKind = iota + 1 // a provider says skippable: a zero run, counted as skipped
	runHole                      // unpopulated in the memory file: a zero run
	runZero                      // populated, all zero: a zero run
	runData                      // must travel
	runWrong                     // a "zero" provider's pages that hold data: they travel (hinter.wrongSent)
)

// run is count pages from first, all of one kind; who is the provider of
// a runHinted or runWrong.
type run struct {
	first, count uint64
	kind         runKind
	who          int
}

// wire is how a run travels.
func (r run) wire() transport.Kind {
	if r.kind == runData || r.kind == runWrong {
		return transport.KindData
	}
	return transport.KindZero
}

// classifier yields the runs of one pass. It reads guest RAM only for
// populated pages of no hinted stretch, and the memory files' hole maps.
type classifier struct {
	set    *bitmap.Bitmap
	layout framework.Layout
	base   []uint64 // first page of each region
	mem    [][]byte
	holes  []holes
	hints  *hinter

	region  int    // region of the cursor
	p       uint64 // cursor: pages before it are classified
	setEnd  uint64 // the set stretch holding p ends here (valid while p < setEnd)
	regionE uint64 // end page of the current region
}

// classify starts a pass over set: hole knowledge is only as fresh as
// the dirty sync that began the pass (a page the guest populates later is
// in the next sync anyway).
func (s *sender) classify(set *bitmap.Bitmap) *classifier {
	for i := range s.holes {
		s.holes[i].valid = false
	}
	c := &classifier{set: set, layout: s.layout, base: s.base, mem: s.mem, holes: s.holes, hints: s.hints}
	if len(s.layout) > 0 {
		c.regionE = s.base[0] + s.layout[0].Size/framework.PageSize
	}
	return c
}

// next returns the next run, at most budget (>= 1) pages of data, or
// false at the end of the pass.
func (c *classifier) next(budget uint64) (run, bool) {
	p, end, ok := c.stretch()
	if !ok {
		return run{}, false
	}
	r := c.at(p, end, max(budget, 1))
	c.p += r.count
	return r, true
}

// stretch returns the rest of the set stretch at the cursor, [p, end)
// in one region, moving the cursor to the next stretch when it is past
// this one; false at the end of the pass.
func (c *classifier) stretch() (p, end uint64, ok bool) {
	for c.region < len(c.layout) {
		if c.p < c.setEnd {
			return c.p, c.setEnd, true
		}
		p := c.set.NextSetIn(c.p, c.regionE)
		if p == c.regionE {
			c.nextRegion()
			continue
		}
		c.p, c.setEnd = p, c.set.NextClearIn(p, c.regionE)
	}
	return 0, 0, false
}

func (c *classifier) nextRegion() {
	c.region++
	if c.region < len(c.layout) {
		c.p = c.base[c.region]
		c.setEnd = c.p
		c.regionE = c.p + c.layout[c.region].Size/framework.PageSize
	}
}

// at classifies pages from p (set, in the current region) before end.
func (c *classifier) at(p, end, budget uint64) run {
	if who, ok := c.hints.skip(p); ok {
		n := c.hints.extent(who, p, end)
		if c.hints.srcs[who].Meaning == hint.MeaningZero {
			return c.checkZero(who, p, p+n, budget)
		}
		return run{first: p, count: n, kind: runHinted, who: who}
	}
	// The stretch stops at the next hinted page, so hints keep their
	// credit (and free pages stay exempt from the page check).
	end = c.hints.nextMarked(p, end)
	hole, stateEnd := c.state(p)
	if hole {
		return run{first: p, count: min(end, stateEnd) - p, kind: runHole}
	}
	end = min(end, stateEnd)
	if c.zero(p) {
		return run{first: p, count: c.while(p, end, true) - p, kind: runZero}
	}
	return run{first: p, count: c.while(p, min(end, p+budget), false) - p, kind: runData}
}

// checkZero checks a "zero" hint for [p, end): holes and zero pages are
// the provider's (skipped), data pages travel. A lie costs the provider
// its credit, never a page; whether data was a lie or a guest write
// since the provider looked is settled at the next sync
// (hinter.settleWrong).
func (c *classifier) checkZero(who int, p, end, budget uint64) run {
	hole, stateEnd := c.state(p)
	if hole {
		return run{first: p, count: min(end, stateEnd) - p, kind: runHinted, who: who}
	}
	end = min(end, stateEnd)
	if c.zero(p) {
		return run{first: p, count: c.while(p, end, true) - p, kind: runHinted, who: who}
	}
	return run{first: p, count: c.while(p, min(end, p+budget), false) - p, kind: runWrong, who: who}
}

// state reports whether page p is in a hole of its memory file, and the
// page (exclusive) where that answer ends: one SEEK_DATA/SEEK_HOLE query
// serves the whole extent.
func (c *classifier) state(p uint64) (hole bool, end uint64) {
	r, base := c.layout[c.region], c.base[c.region]
	off := int64(r.Offset + (p-base)*framework.PageSize)
	hole, until := c.holes[c.region].at(off)
	if until >= int64(r.Offset+r.Size) {
		return hole, c.regionE
	}
	rel := uint64(until) - r.Offset
	if hole { // a page with any data in it is data
		if end = base + rel/framework.PageSize; end > p {
			return true, end
		}
		return false, p + 1
	}
	return false, base + (rel+framework.PageSize-1)/framework.PageSize
}

// zero reads populated page p and reports whether it is all zero.
func (c *classifier) zero(p uint64) bool {
	off := (p - c.base[c.region]) * framework.PageSize
	return isZero(c.mem[c.region][off : off+framework.PageSize])
}

// while returns the first page in (p, end) whose zero test differs from
// want, or end; p itself is known to match. Populated pages only.
func (c *classifier) while(p, end uint64, want bool) uint64 {
	q := p + 1
	for q < end && c.zero(q) == want {
		q++
	}
	return q
}
