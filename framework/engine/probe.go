package engine

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
)

// A probe reads the dirty log in the middle of a live pass, in mode
// "auto", to tell early whether the guest dirties pages faster than the
// link moves them: a pass (the bulk pass above all) would otherwise run
// to its end first, and every page it sent and the guest wrote again
// would cost a second send. Each probe window lasts at least probeEvery
// and probeMinPages data pages, so a window's counts are not noise and a
// large guest's sync is not repeated too often.
const (
	probeEvery    = 500 * time.Millisecond
	probeMinPages = 1024
)

// probeSample is the most pages of a probe window's dirty set that the
// probe reads to learn the share of them that carry data (sampleFree).
// Its error is a few per cent (a share measured on 256 pages), and it
// decides only post-copy against another pre-copy pass: the pause waits
// for the estimate at a pass's end.
const probeSample = 256

// probe measures the window since the pass began or since the last
// probe, at a batch boundary of a live pass whose classifier stands at
// cursor in set: the dirty log is read (no new hint generation:
// hinter.probeWritten), and the pages written since are sent again in
// the next pass unless this pass has still to send them. It reports
// whether to switch to post-copy now (s.pcWhy says why): the window saw
// more pages written that carry data than it sent, and sending those
// would not fit in max_downtime.
//
// Which of the pages written carry data is sampled (sampleFree) where
// charging them all would switch: a guest that zeroes many pages (a
// kernel with init_on_free=1, buffers it clears) writes pages that
// travel as zero runs, which cost the link almost nothing, and pre-copy
// may converge on the rest. The sample is the window's own pages, not
// the last dirty pass's share (finalFree): in the bulk pass there is
// none, and in a dirty pass it is of the pages written a pass earlier.
func (s *sender) probe(set *bitmap.Bitmap, cursor uint64) (bool, error) {
	if s.opt.Postcopy != PostcopyAuto || !s.pcReady {
		return false, nil
	}
	window, sent := time.Since(s.probeAt), s.rep.PagesSent-s.probeSent
	if window < probeEvery || sent < probeMinPages {
		return false, nil
	}
	d := bitmap.New(s.layout.Pages())
	if err := s.src.SyncDirtyLog(d); err != nil {
		return false, fmt.Errorf("dirty sync (probe in pass %d): %w", s.pass, err)
	}
	s.probeAt, s.probeSent = time.Now(), s.rep.PagesSent
	dirtied := d.Count()
	s.hints.probeWritten(d)
	// The pages ahead are classified later, and must be from what they
	// hold now: a hole extent queried before this sync may have been
	// written since (TestProbeStaleHole); a populated one stays populated
	// (forgetHoles).
	for i := range s.holes {
		s.holes[i].forgetHoles()
	}
	rate := s.rate
	if rate <= 0 { // the bulk pass: its own window is the first measurement
		rate = float64(sent) / window.Seconds()
	}
	data := dirtied
	if dirtied > sent && downtimeAt(dirtied, rate) > s.opt.MaxDowntime { // charged all, it would switch
		data = dataOf(dirtied, s.sampleFree(d, dirtied))
	}
	ahead := bitmap.New(s.layout.Pages()) // this pass sends these, as data or zero: no mark skips them now
	ahead.Or(set)
	ahead.ClearRange(0, cursor)
	d.AndNot(ahead)
	s.carry.Or(d)

	s.opt.Log.Debug("probe", "pass", s.pass, "window", window, "sent", sent, "dirtied", dirtied, "data", data)
	if data <= sent {
		return false, nil
	}
	if est := downtimeAt(data, rate); est > s.opt.MaxDowntime {
		s.pcWhy = fmt.Sprintf("the guest dirtied %d pages (%d of them expected to carry data) in %v of pass %d, which sent %d: "+
			"it dirties faster than the link moves (sending them would take %v, above max_downtime %v)",
			dirtied, data, window.Round(time.Millisecond), s.pass, sent, est.Round(time.Millisecond), s.opt.MaxDowntime)
		return true, nil
	}
	return false, nil
}

// sampleFree estimates, of the n pages set in d, the share that would
// travel as zero runs: holes and populated pages that are all zero, as
// the final pass (no hints) would classify them now. It reads up to
// probeSample of them, one at random in each of probeSample equal
// shares of d's pages by rank (spread: a stratified sample), and returns
// 0 (all data) for an empty d. The share's middle page instead, a
// systematic sample, was misled by any guest whose data and zero pages
// alternate at a stride dividing the shares' (TestProbeSampleNotAliased:
// 128 KiB of data, 128 KiB of zeroes, all free to the sample, the guest
// out-dirtied the link in pre-copy until max_passes); a random page in
// each share errs, whatever the layout, no more than a simple random
// sample of as many pages (a standard deviation of at most 3.1 points).
//
// What it touches and costs: one walk of d's words (as Count), at most
// one SEEK_DATA query per sampled page (pageFree: none for a page in a
// hole an earlier query found; never a SEEK_HOLE, nor the pass's hole
// maps) and at most probeSample page reads (1 MiB). A page in a
// hole is never read: reading it through the mapping would allocate it
// in the memory file. Nothing the pass does changes: no dirty bit, hint
// mark or set of the pass is read or written but d. The queries move the
// file offset of the sender's descriptors, as the classifier's do;
// everything that reads guest RAM through them uses pread.
//
// What it cannot see: contents change after the read (a sampled zero
// page the guest fills before its send is charged as free, a data page
// it zeroes as data); pages written after the probe's sync are the next
// window's. The sample is random: two probes of one window may judge it
// differently where its share of data lies near the line. A hole the
// VMM punches between the query and the read is populated again by the
// read (one page, as the classifier's own reads can).
func (s *sender) sampleFree(d *bitmap.Bitmap, n uint64) float64 {
	ps := spread(d, n, probeSample, rand.Uint64N)
	if len(ps) == 0 {
		return 0
	}
	var free uint64
	region, end := -1, uint64(0)
	var holeEnd int64 // where the hole the region's last query found ends: later pages before it lie in that hole
	for _, p := range ps {
		for p >= end { // ps ascends: the regions are entered in order
			region++
			end = s.base[region] + s.layout[region].Size/framework.PageSize
			holeEnd = 0
		}
		if s.pageFree(region, p, &holeEnd) {
			free++
		}
	}
	return float64(free) / float64(len(ps))
}

// pageFree reports whether page p of region i would travel as a zero
// run: a hole (one SEEK_DATA query from the page: no data before its
// end; the page is not read) or a populated page that is all zero. A
// page part hole, part data counts as data, unread; where SEEK_DATA
// fails (unsupported) the page is read, as the classifier reads every
// page then (holes.broken). holeEnd is where the hole a query found
// ends (the next data): pages below it need no query of their own.
//
// It asks no SEEK_HOLE, as a hole map (holes.at) does to learn where a
// populated extent ends: on shmem that answer walks every page of the
// extent, a region's whole populated RAM for a guest that has touched
// it all (BenchmarkSampleFree 2GiB-populated: ~13 ms a sample with a
// hole map, ~6 ms a GiB; about 1 ms with SEEK_DATA alone).
func (s *sender) pageFree(i int, p uint64, holeEnd *int64) bool {
	rel := (p - s.base[i]) * framework.PageSize
	off := int64(s.layout[i].Offset + rel)
	if off+framework.PageSize > *holeEnd { // not known to be a hole: ask
		data, err := unix.Seek(s.holes[i].fd, off, unix.SEEK_DATA)
		switch {
		case err == unix.ENXIO: // no data from off to the end of the file
			*holeEnd = 1 << 62
		case err != nil: // SEEK_DATA unsupported: read it
			return isZero(s.mem[i][rel : rel+framework.PageSize])
		case data > off:
			*holeEnd = data
		default:
			return isZero(s.mem[i][rel : rel+framework.PageSize])
		}
	}
	return off+framework.PageSize <= *holeEnd // a hole, if it covers the page whole
}

// spread returns up to k of the n pages set in d, ascending, one from
// each of k equal shares of d's set pages by rank (all of them when
// n <= k): the one at rank pick(size) within a share of size pages
// (pick returns 0 to size-1). n must be d.Count(); a larger n yields
// fewer pages. It walks d's words once, stopping at the last page it
// returns.
func spread(d *bitmap.Bitmap, n, k uint64, pick func(size uint64) uint64) []uint64 {
	k = min(k, n)
	ps := make([]uint64, 0, k)
	if k == 0 {
		return ps
	}
	var i uint64            // pages found
	rank := func() uint64 { // share i's pick: shares are [i*n/k, (i+1)*n/k), none empty as n >= k
		lo, hi := i*n/k, (i+1)*n/k
		return lo + pick(hi-lo)
	}
	r := rank()
	var before uint64 // set pages in the words before w
	for w, word := range d.Words() {
		c := uint64(bits.OnesCount64(word))
		for r < before+c {
			ps = append(ps, uint64(w)*64+nthSet(word, r-before))
			if i++; i == k {
				return ps
			}
			r = rank()
		}
		before += c
	}
	return ps
}

// nthSet is the position of the r-th (from 0) set bit of word, which
// has more than r set bits.
func nthSet(word, r uint64) uint64 {
	for range r {
		word &= word - 1
	}
	return uint64(bits.TrailingZeros64(word))
}
