package pvh

import (
	"cmp"
	"fmt"
	"slices"
)

// Load copies the kernel's segments from image (the same bytes given to
// [Parse]) into mem and zeroes each segment's bss.
//
// Before writing anything it checks that every segment lies entirely inside
// one region of ram (sorted, the first starting at 0), stays out of the
// 32-bit MMIO hole and of the boot-info area [BootInfoStart, BootInfoEnd),
// does not overlap another segment, and that the entry point lies inside a
// segment. On error guest memory is unchanged unless mem itself failed
// part-way through the copy.
func (k *Kernel) Load(image []byte, mem Memory, ram []Region) error {
	if err := checkRAM(ram); err != nil {
		return fmt.Errorf("load kernel: %w", err)
	}
	if err := k.checkPlacement(uint64(len(image)), ram); err != nil {
		return fmt.Errorf("load kernel: %w", err)
	}
	for _, s := range k.Segments {
		dst, err := slice(mem, s.GPA, s.MemSize)
		if err != nil {
			return fmt.Errorf("load kernel: segment %s: %w", segRange(s), err)
		}
		n := copy(dst, image[s.Offset:s.Offset+s.FileSize])
		clear(dst[n:])
	}
	return nil
}

// checkPlacement validates every segment against the image size, guest RAM,
// the reserved areas and each other, and the entry point against the
// segments.
func (k *Kernel) checkPlacement(imageLen uint64, ram []Region) error {
	if len(k.Segments) == 0 {
		return fmt.Errorf("kernel has no segments to load")
	}
	entryOK := false
	for _, s := range k.Segments {
		if err := checkSegment(s, imageLen, ram); err != nil {
			return err
		}
		if uint64(k.Entry) >= s.GPA && uint64(k.Entry) < s.GPA+s.MemSize {
			entryOK = true
		}
	}
	if err := checkOverlaps(k.Segments); err != nil {
		return err
	}
	if !entryOK {
		return fmt.Errorf("PVH entry point %#x is not inside any loaded segment (kernel spans %#x-%#x)", k.Entry, k.Low, k.High)
	}
	return nil
}

// checkSegment validates one segment.
func checkSegment(s Segment, imageLen uint64, ram []Region) error {
	end := s.GPA + s.MemSize
	if s.MemSize == 0 || end < s.GPA || s.FileSize > s.MemSize {
		return fmt.Errorf("segment at %#x has invalid sizes (file %#x, memory %#x)", s.GPA, s.FileSize, s.MemSize)
	}
	if fend := s.Offset + s.FileSize; fend < s.Offset || fend > imageLen {
		return fmt.Errorf("segment %s: file range %#x+%#x is beyond the end of the %d-byte image", segRange(s), s.Offset, s.FileSize, imageLen)
	}
	if s.GPA < MMIOHoleEnd && end > MMIOHoleStart {
		return fmt.Errorf("segment %s overlaps the 32-bit MMIO hole (%#x-%#x); link the kernel below 3 GiB",
			segRange(s), uint64(MMIOHoleStart), uint64(MMIOHoleEnd-1))
	}
	if s.GPA < BootInfoEnd && end > BootInfoStart {
		return fmt.Errorf("segment %s overlaps the PVH boot-info area (%#x-%#x); link the kernel at 1 MiB or above",
			segRange(s), BootInfoStart, BootInfoEnd-1)
	}
	for _, r := range ram {
		if r.contains(s.GPA, end) {
			return nil
		}
	}
	return fmt.Errorf("segment %s lies outside guest RAM (%d MiB); give the VM more memory or link the kernel lower",
		segRange(s), totalMiB(ram))
}

// checkOverlaps reports an error if two segments share a guest address.
func checkOverlaps(segs []Segment) error {
	sorted := slices.Clone(segs)
	slices.SortFunc(sorted, func(a, b Segment) int { return cmp.Compare(a.GPA, b.GPA) })
	for i := 1; i < len(sorted); i++ {
		if prev := sorted[i-1]; sorted[i].GPA < prev.GPA+prev.MemSize {
			return fmt.Errorf("segments %s and %s overlap", segRange(prev), segRange(sorted[i]))
		}
	}
	return nil
}

// segRange formats a segment's guest range as "0xSTART-0xLAST".
func segRange(s Segment) string {
	return fmt.Sprintf("%#x-%#x", s.GPA, s.GPA+s.MemSize-1)
}
