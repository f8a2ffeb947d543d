package engine

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestProbeZeroPagesNoSwitch: in mode "auto", the zeroing guest with
// 2048 data pages and 14 336 zeroed ones dirtied between every two
// syncs, behind a link that moves 2048 data pages a second, max_downtime
// 2 s. A pass's first batch is its 2048 data pages (about 1 s), so the
// probe fires at its end (window >= 500 ms, >= 1024 data pages sent)
// and sees 16 384 pages dirtied: charged all, 8 s, it switched to
// post-copy in the bulk pass. 2048 of them carry data (about 1 s), no
// more than the window sent: pre-copy goes on, and converges after the
// first dirty pass (3 passes with the final one). With 8192 of the
// pages holding data the probe in the bulk pass still switches: 8192
// data pages take about 4 s.
func TestProbeZeroPagesNoSwitch(t *testing.T) {
	opt := Options{Postcopy: PostcopyAuto, MaxDowntime: 2 * time.Second, MaxPasses: 4, SwitchoverTimeout: 10 * time.Second}
	slow := func(tr transport.Transport) transport.Transport { return &slowLink{Transport: tr, pagesPerSec: 2048} }
	t.Run("zeroed", func(t *testing.T) {
		src, _ := zeroingGuest(t, 2048)
		d, r := runPostcopy(t, src, opt, func(d *scriptDst) { d.wrapSrc = slow })
		if r.serr != nil || r.derr != nil {
			t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
		}
		if !strings.Contains(r.logs.String(), "msg=probe pass=1") {
			t.Fatalf("no probe in the bulk pass: not the scenario; log:\n%s", r.logs)
		}
		if r.srep.Mode != ModePrecopy || r.srep.Passes != 3 {
			t.Errorf("mode %q after %d passes; want pre-copy after 3: of the 16 384 pages a window dirtied, 2048 carry data (~1 s); log:\n%s",
				r.srep.Mode, r.srep.Passes, r.logs)
		}
		if !bytes.Equal(src.mem, d.vm.mem) {
			t.Error("the destination's RAM differs from the source's")
		}
	})
	t.Run("data", func(t *testing.T) {
		src, _ := zeroingGuest(t, 8192)
		d, r := runPostcopy(t, src, opt, func(d *scriptDst) { d.wrapSrc = slow })
		if r.serr != nil || r.derr != nil {
			t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
		}
		d.check(t)
		if r.srep.Mode != ModePostcopy || !strings.Contains(r.logs.String(), "of pass 1, which sent") {
			t.Errorf("mode %q: no switch at the bulk pass's probe, whose window dirtied 8192 data pages (~4 s); log:\n%s",
				r.srep.Mode, r.logs)
		}
	})
}

// TestSampleFree: of a sample spread over two regions (region 0: 64
// data pages, 64 populated zero pages, 128 never populated; region 1
// never populated), one page of every two dirty ones is sampled (each
// pair is all data, all zero or all hole: the share is exact whichever
// page is picked), and the share of zero pages and holes is the
// layout's (224 of 256). The holes stay
// holes: a sample that read them through the mapping would have
// populated them.
func TestSampleFree(t *testing.T) {
	const regionPages = 256
	v := newFakeVM(t, [2]uint64{0, regionPages * framework.PageSize}, [2]uint64{1 << 32, regionPages * framework.PageSize})
	for p := range uint64(64) {
		v.write(p, 0x5a)
	}
	clear(v.mem[64*framework.PageSize : 128*framework.PageSize]) // populated, all zero
	s := &sender{layout: v.layout, base: []uint64{0, regionPages}}
	for i, r := range v.layout {
		s.mem = append(s.mem, v.Memory(i))
		s.holes = append(s.holes, holes{fd: r.Fd})
	}
	d := bitmap.New(v.layout.Pages())
	d.SetAll()
	if got, want := s.sampleFree(d, d.Count()), 224.0/256; got != want {
		t.Errorf("free share %v, want %v", got, want)
	}
	h := holes{fd: v.layout[0].Fd}
	if hole, until := h.at(128 * framework.PageSize); !hole || until < 2*regionPages*framework.PageSize {
		t.Errorf("after the sample, region 0's pages from 128 on are no longer a hole (hole %v, until offset %d): "+
			"it read holes through the mapping", hole, until)
	}
	if got := s.sampleFree(bitmap.New(v.layout.Pages()), 0); got != 0 {
		t.Errorf("nothing dirtied: free share %v, want 0", got)
	}
}

// TestSpread: the sample is k of the set pages, ascending, one from
// each of k equal shares by rank, at the rank pick chooses within it
// (first, middle, last, or at random); all of them when there are no
// more than k.
func TestSpread(t *testing.T) {
	every3 := bitmap.New(3000) // pages 0, 3, 6, ...: rank r is page 3r
	for p := uint64(0); p < 3000; p += 3 {
		every3.Set(p)
	}
	few := bitmap.New(1000)
	for _, p := range []uint64{5, 63, 64, 999} {
		few.Set(p)
	}
	first := func(uint64) uint64 { return 0 }
	middle := func(size uint64) uint64 { return size / 2 }
	last := func(size uint64) uint64 { return size - 1 }
	for _, tc := range []struct {
		name string
		d    *bitmap.Bitmap
		n, k uint64
		pick func(uint64) uint64
		want []uint64
	}{
		{"fewer than k", few, 4, 256, middle, []uint64{5, 63, 64, 999}},
		{"k of them, middle", every3, 1000, 4, middle, []uint64{3 * 125, 3 * 375, 3 * 625, 3 * 875}},
		{"k of them, first", every3, 1000, 4, first, []uint64{0, 3 * 250, 3 * 500, 3 * 750}},
		{"k of them, last", every3, 1000, 4, last, []uint64{3 * 249, 3 * 499, 3 * 749, 3 * 999}},
		{"uneven shares, last", every3, 10, 4, last, []uint64{3 * 1, 3 * 4, 3 * 6, 3 * 9}},
		{"none", bitmap.New(100), 0, 256, middle, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spread(tc.d, tc.n, tc.k, tc.pick); !slices.Equal(got, tc.want) {
				t.Errorf("spread %v, want %v", got, tc.want)
			}
		})
	}
	ps := spread(every3, 1000, probeSample, rand.Uint64N)
	for i, p := range ps {
		lo, hi := uint64(i)*1000/probeSample, (uint64(i)+1)*1000/probeSample
		if p%3 != 0 || p/3 < lo || p/3 >= hi {
			t.Fatalf("sample %d is page %d (rank %d), want a set page of ranks [%d, %d)", i, p, p/3, lo, hi)
		}
	}
	if len(ps) != probeSample {
		t.Errorf("%d pages sampled, want %d", len(ps), probeSample)
	}
}

// TestDataOf: the pages charged as data at a free share, rounded so
// that a page in doubt is charged; a share outside 0 to 1 (or NaN) is
// clipped, never a count above n.
func TestDataOf(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		free float64
		want uint64
	}{
		{16384, 0, 16384},
		{16384, 14336.0 / 16384, 2048},
		{11, 0.5, 6},
		{11, 1, 0},
		{11, 2, 0},
		{11, -1, 11},
		{11, math.NaN(), 11},
		{0, 0.5, 0},
	} {
		if got := dataOf(tc.n, tc.free); got != tc.want {
			t.Errorf("dataOf(%d, %v) = %d, want %d", tc.n, tc.free, got, tc.want)
		}
	}
}

// TestProbeSampleNotAliased: in mode "auto", a guest of 64 MiB whose
// pages hold data in the first half of every 64 (128 KiB of data, 128
// KiB of populated zero pages, and so on), all written again between
// every two syncs, behind a link that moves 2048 data pages a second,
// max_downtime 2 s: each window dirties 8192 data pages (~4 s), so the
// bulk pass's first probe must switch. The middle page of each of 256
// equal shares of the 16 384 dirty pages is the first of a zero half:
// a sample of those middles found every page free, and the probes let
// the guest run pre-copy until max_passes (data=0 at every probe). One
// page at random in each share sees the layout's half.
func TestProbeSampleNotAliased(t *testing.T) {
	src, _, _ := outrunGuest(t, 64*mib, 0)
	pages := src.layout.Pages()
	for p := uint64(32); p < pages; p += 64 {
		clear(src.mem[p*framework.PageSize : (p+32)*framework.PageSize]) // populated, all zero
	}
	opt := Options{Postcopy: PostcopyAuto, MaxDowntime: 2 * time.Second, MaxPasses: 2, SwitchoverTimeout: 10 * time.Second}
	slow := func(tr transport.Transport) transport.Transport { return &slowLink{Transport: tr, pagesPerSec: 2048} }
	d, r := runPostcopy(t, src, opt, func(d *scriptDst) { d.wrapSrc = slow })
	if r.serr != nil || r.derr != nil {
		t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
	}
	d.check(t)
	if r.srep.Mode != ModePostcopy || !strings.Contains(r.logs.String(), "of pass 1, which sent") {
		t.Errorf("mode %q: no switch at the bulk pass's probe, whose window dirtied 8192 data pages (~4 s) among 8192 zero pages; log:\n%s",
			r.srep.Mode, r.logs)
	}
}

// BenchmarkSampleFree is one probe's sample (sampleFree, 256 pages of a
// window that dirtied every page) over a memfd: 8 GiB never populated,
// 8 GiB with every 100th page populated with data, and 2 GiB all
// populated with data (a guest that has touched all its RAM).
//
// Run: go test ./framework/engine/ -run '^$' -bench SampleFree -benchtime 20x
func BenchmarkSampleFree(b *testing.B) {
	for _, tc := range []struct {
		name  string
		size  uint64
		every uint64 // every every-th page holds data; 0: none
	}{{"8GiB-holes", 8 << 30, 0}, {"8GiB-data1pct", 8 << 30, 100}, {"2GiB-populated", 2 << 30, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			v := newFakeVM(b, [2]uint64{0, tc.size})
			pages := v.layout.Pages()
			if tc.every > 0 {
				for p := uint64(0); p < pages; p += tc.every {
					v.mem[p*framework.PageSize] = 1
				}
			}
			s := &sender{layout: v.layout, base: []uint64{0}, mem: [][]byte{v.Memory(0)}, holes: []holes{{fd: v.layout[0].Fd}}}
			d := bitmap.New(pages)
			d.SetAll()
			n := d.Count()
			b.ResetTimer()
			for range b.N {
				s.sampleFree(d, n)
			}
		})
	}
}
