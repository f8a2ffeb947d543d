package pvh

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ELF constants used by the parser (from the System V gABI).
const (
	elfClass32  = 1
	elfClass64  = 2
	elfData2LSB = 1
	elfData2MSB = 2
	etExec      = 2
	em386       = 3
	emX86_64    = 62
	ptLoad      = 1
	ptNote      = 4
	pnXNum      = 0xffff

	ehdr32Size = 52
	ehdr64Size = 64
	phdr32Size = 32
	phdr64Size = 56
)

var le = binary.LittleEndian

// ErrNotELF is returned by [Parse] when the image does not start with the
// ELF magic.
var ErrNotELF = errors.New("not an ELF file")

// ErrNoPVHNote is returned by [Parse] when the ELF has no
// XEN_ELFNOTE_PHYS32_ENTRY note.
var ErrNoPVHNote = errors.New("kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); is it built for PVH?")

// Segment is one PT_LOAD program header: FileSize bytes from file offset
// Offset go to guest-physical address GPA (the header's p_paddr), and the
// rest up to MemSize is zeroed.
type Segment struct {
	GPA, FileSize, MemSize uint64
	Offset                 uint64
}

// Kernel is a parsed PVH kernel image.
type Kernel struct {
	Class    int       // 32 or 64 (ELFCLASS32 or ELFCLASS64)
	Entry    uint32    // physical entry address from XEN_ELFNOTE_PHYS32_ENTRY
	Segments []Segment // PT_LOAD segments with a non-zero MemSize, in file order
	Low      uint64    // lowest GPA used by a segment
	High     uint64    // highest GPA used by a segment, plus one
}

// elfHeader holds the fields of the ELF header that the loader needs.
type elfHeader struct {
	class     int
	phoff     uint64
	phentsize uint64
	phnum     uint64
}

// progHeader holds the fields of a program header that the loader needs.
type progHeader struct {
	typ                   uint32
	offset, paddr         uint64
	filesz, memsz, palign uint64
}

// Parse validates a PVH kernel image and returns its segments and entry
// point. It does not keep image. It checks the ELF identification (magic,
// class 32 or 64, little-endian), type (ET_EXEC), machine (EM_386 or
// EM_X86_64), that the program headers and every PT_LOAD and PT_NOTE file
// range lie inside image without overflow, that p_filesz <= p_memsz, and
// that a PT_NOTE carries the PVH entry note.
func Parse(image []byte) (*Kernel, error) {
	h, err := parseHeader(image)
	if err != nil {
		return nil, err
	}
	phs, err := programHeaders(image, h)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Class: h.class}
	found := false
	for i, ph := range phs {
		switch ph.typ {
		case ptLoad:
			if err := k.addSegment(i, ph, uint64(len(image))); err != nil {
				return nil, err
			}
		case ptNote:
			data, err := fileRange(image, ph.offset, ph.filesz)
			if err != nil {
				return nil, fmt.Errorf("program header %d (PT_NOTE): %w", i, err)
			}
			entry, ok, err := findEntryNote(data, noteAlign(h.class, ph.palign))
			if err != nil {
				return nil, fmt.Errorf("program header %d (PT_NOTE): %w", i, err)
			}
			if ok && !found {
				k.Entry, found = entry, true
			}
		}
	}
	if len(k.Segments) == 0 {
		return nil, fmt.Errorf("kernel has no loadable segments (no PT_LOAD with p_memsz > 0)")
	}
	if !found {
		return nil, ErrNoPVHNote
	}
	return k, nil
}

// parseHeader checks the ELF identification and header.
func parseHeader(image []byte) (elfHeader, error) {
	if len(image) < 16 || string(image[:4]) != "\x7fELF" {
		return elfHeader{}, ErrNotELF
	}
	var h elfHeader
	need := 0
	switch image[4] {
	case elfClass32:
		h.class, need = 32, ehdr32Size
	case elfClass64:
		h.class, need = 64, ehdr64Size
	default:
		return h, fmt.Errorf("unsupported ELF class %d; want 1 (ELF32) or 2 (ELF64)", image[4])
	}
	switch image[5] {
	case elfData2LSB:
	case elfData2MSB:
		return h, fmt.Errorf("big-endian ELF is not supported; an x86 kernel is little-endian")
	default:
		return h, fmt.Errorf("unsupported ELF data encoding %d; want 1 (little-endian)", image[5])
	}
	if len(image) < need {
		return h, fmt.Errorf("truncated ELF header: image is %d bytes, ELF%d header needs %d", len(image), h.class, need)
	}
	if t := le.Uint16(image[16:]); t != etExec {
		return h, fmt.Errorf("ELF type is %d, want ET_EXEC (2); a PVH kernel must be a linked executable", t)
	}
	if m := le.Uint16(image[18:]); m != em386 && m != emX86_64 {
		return h, fmt.Errorf("ELF machine is %d, want EM_386 (3) or EM_X86_64 (62)", m)
	}
	if h.class == 32 {
		h.phoff = uint64(le.Uint32(image[28:]))
		h.phentsize = uint64(le.Uint16(image[42:]))
		h.phnum = uint64(le.Uint16(image[44:]))
	} else {
		h.phoff = le.Uint64(image[32:])
		h.phentsize = uint64(le.Uint16(image[54:]))
		h.phnum = uint64(le.Uint16(image[56:]))
	}
	return h, nil
}

// programHeaders decodes the program header table after checking that it
// lies inside image.
func programHeaders(image []byte, h elfHeader) ([]progHeader, error) {
	if h.phnum == pnXNum {
		return nil, fmt.Errorf("ELF uses extended program header numbering (e_phnum = PN_XNUM); not supported")
	}
	if h.phnum == 0 {
		return nil, fmt.Errorf("ELF has no program headers")
	}
	min := uint64(phdr32Size)
	if h.class == 64 {
		min = phdr64Size
	}
	if h.phentsize < min {
		return nil, fmt.Errorf("ELF program header size is %d, ELF%d needs at least %d", h.phentsize, h.class, min)
	}
	// phnum and phentsize are 16-bit, so their product cannot overflow.
	table, err := fileRange(image, h.phoff, h.phnum*h.phentsize)
	if err != nil {
		return nil, fmt.Errorf("truncated program header table (%d entries of %d bytes at %#x): %w",
			h.phnum, h.phentsize, h.phoff, err)
	}
	phs := make([]progHeader, h.phnum)
	for i := range phs {
		b := table[uint64(i)*h.phentsize:]
		if h.class == 32 {
			phs[i] = progHeader{
				typ: le.Uint32(b[0:]), offset: uint64(le.Uint32(b[4:])),
				paddr: uint64(le.Uint32(b[12:])), filesz: uint64(le.Uint32(b[16:])),
				memsz: uint64(le.Uint32(b[20:])), palign: uint64(le.Uint32(b[28:])),
			}
		} else {
			phs[i] = progHeader{
				typ: le.Uint32(b[0:]), offset: le.Uint64(b[8:]),
				paddr: le.Uint64(b[24:]), filesz: le.Uint64(b[32:]),
				memsz: le.Uint64(b[40:]), palign: le.Uint64(b[48:]),
			}
		}
	}
	return phs, nil
}

// addSegment validates a PT_LOAD header and appends it to k.
func (k *Kernel) addSegment(i int, ph progHeader, imageLen uint64) error {
	if ph.filesz > ph.memsz {
		return fmt.Errorf("program header %d (PT_LOAD): p_filesz %#x is larger than p_memsz %#x", i, ph.filesz, ph.memsz)
	}
	if end := ph.offset + ph.filesz; end < ph.offset || end > imageLen {
		return fmt.Errorf("program header %d (PT_LOAD): truncated image: file range %#x+%#x is beyond its %d bytes",
			i, ph.offset, ph.filesz, imageLen)
	}
	end := ph.paddr + ph.memsz
	if end < ph.paddr {
		return fmt.Errorf("program header %d (PT_LOAD): address range %#x+%#x wraps around", i, ph.paddr, ph.memsz)
	}
	if ph.memsz == 0 {
		return nil
	}
	if len(k.Segments) == 0 || ph.paddr < k.Low {
		k.Low = ph.paddr
	}
	if end > k.High {
		k.High = end
	}
	k.Segments = append(k.Segments, Segment{GPA: ph.paddr, FileSize: ph.filesz, MemSize: ph.memsz, Offset: ph.offset})
	return nil
}

// fileRange returns image[off:off+n] or an error if it is out of bounds.
func fileRange(image []byte, off, n uint64) ([]byte, error) {
	end := off + n
	if end < off || end > uint64(len(image)) {
		return nil, fmt.Errorf("file range %#x+%#x is beyond the end of the %d-byte image", off, n, len(image))
	}
	return image[off:end], nil
}
