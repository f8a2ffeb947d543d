package hint

import (
	"encoding/binary"
	"math/bits"
	"testing"
)

// FuzzPageRanges: VM.PageRanges turns guest physical ranges a provider
// did not choose (the balloon's hints are what the guest wrote into its
// free page hint queue, whatever the VMM passed on) into page ranges. On
// a well-formed layout (framework.Layout.Check: page-aligned, increasing)
// of small regions, for any input, page by page: a page is reported iff
// it lies wholly inside one input range, exactly once per range; every
// result passes Range.Check; the ranges of several inputs are those of
// each input alone, in order.
func FuzzPageRanges(f *testing.F) {
	// The input: the first region's page u32, regions-1 u8, then per
	// region gap u16 and size u8 in pages; then ranges of 9 bytes (region
	// k, offset int32, size u32).
	// Two regions with a hole; ranges inside one, across the hole, with
	// partial pages, before the first region, and wrapping.
	f.Add(pageRangesSeed(0x100, []uint16{0, 4, 3, 2}, []pageRangesInput{
		{0, 0x1000, 0x2000}, {0, 0x2800, 0x6000}, {1, -0x3001, 0x5002}, {0, -0x10000, 0x20000}, {0x80, 10, 100}}))
	// Regions back to back, one range over all of them.
	f.Add(pageRangesSeed(0, []uint16{0, 1, 0, 255, 0, 7}, []pageRangesInput{{0, 0, 0x200000}, {2, 4095, 4097}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		vm, gpas, ok := fuzzLayout(b)
		if !ok {
			return
		}
		all := vm.PageRanges(gpas)
		var each []Range
		for _, g := range gpas {
			rs := vm.PageRanges([]GPARange{g})
			each = append(each, rs...)
			checkPageRanges(t, vm, g, rs)
		}
		if len(all) != len(each) {
			t.Fatalf("%d ranges for the inputs together, %d for each alone", len(all), len(each))
		}
		for i := range all {
			if all[i] != each[i] {
				t.Fatalf("range %d is %+v for the inputs together, %+v for each alone", i, all[i], each[i])
			}
		}
	})
}

// pageRangesInput is one range of a FuzzPageRanges input: offset from
// region k's start, or, for k >= 0x80, below 2^64.
type pageRangesInput struct {
	k    byte
	off  int32
	size uint32
}

// pageRangesSeed encodes a FuzzPageRanges input: the first region's
// page, then (gap, size) in pages for each region, then the ranges.
func pageRangesSeed(start uint32, gapSize []uint16, rs []pageRangesInput) []byte {
	b := binary.LittleEndian.AppendUint32(nil, start)
	b = append(b, byte(len(gapSize)/2-1))
	for i := 0; i+1 < len(gapSize); i += 2 {
		b = binary.LittleEndian.AppendUint16(b, gapSize[i])
		b = append(b, byte(gapSize[i+1]))
	}
	for _, r := range rs {
		b = append(b, r.k)
		b = binary.LittleEndian.AppendUint32(b, uint32(r.off))
		b = binary.LittleEndian.AppendUint32(b, r.size)
	}
	return b
}

// fuzzLayout decodes a well-formed layout of at most 8 regions of at
// most 255 pages each, and the ranges to convert.
func fuzzLayout(b []byte) (VM, []GPARange, bool) {
	if len(b) < 5 {
		return VM{}, nil, false
	}
	gpa := uint64(binary.LittleEndian.Uint32(b)) * PageSize
	n := int(b[4]%8) + 1
	b = b[5:]
	var vm VM
	for range n {
		if len(b) < 3 {
			return VM{}, nil, false
		}
		gpa += uint64(binary.LittleEndian.Uint16(b)) * PageSize
		size := uint64(b[2]) * PageSize
		b = b[3:]
		if size == 0 {
			continue
		}
		vm.RAM = append(vm.RAM, Region{GPA: gpa, Size: size})
		gpa += size
	}
	var gpas []GPARange
	for ; len(b) >= 9 && len(gpas) < 16; b = b[9:] {
		off, size := int64(int32(binary.LittleEndian.Uint32(b[1:]))), uint64(binary.LittleEndian.Uint32(b[5:]))
		if b[0] >= 0x80 {
			gpas = append(gpas, GPARange{GPA: ^uint64(0) - uint64(uint32(off)), Size: size})
			continue
		}
		if len(vm.RAM) == 0 {
			break
		}
		base := vm.RAM[int(b[0])%len(vm.RAM)].GPA
		gpas = append(gpas, GPARange{GPA: base + uint64(off), Size: size}) // wraps below 0 on purpose
	}
	return vm, gpas, true
}

// checkPageRanges checks one input's ranges against every page of vm.
func checkPageRanges(t *testing.T, vm VM, g GPARange, rs []Range) {
	t.Helper()
	covered := map[uint64]int{}
	for _, r := range rs {
		if err := r.Check(vm.Pages()); err != nil {
			t.Fatalf("%+v from %+v: %v", r, g, err)
		}
		for p := r.First; p < r.First+r.Count; p++ {
			covered[p]++
		}
	}
	end, carry := bits.Add64(g.GPA, g.Size, 0)
	for p := range vm.Pages() {
		gpa, _ := vm.GPA(p)
		inside := carry == 0 && gpa >= g.GPA && gpa+PageSize <= end
		if want := map[bool]int{true: 1}[inside]; covered[p] != want {
			t.Fatalf("page %d (%#x) reported %d times for %#x+%#x, want %d", p, gpa, covered[p], g.GPA, g.Size, want)
		}
	}
}
