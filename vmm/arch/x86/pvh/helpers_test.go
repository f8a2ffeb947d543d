package pvh

import (
	"encoding/binary"
	"fmt"
)

// testSeg describes one PT_LOAD segment for buildELF.
type testSeg struct {
	paddr uint64
	data  []byte
	memsz uint64 // 0 means len(data)
}

// testNote describes one note for buildELF. name includes its NUL.
type testNote struct {
	name string
	typ  uint32
	desc []byte
}

// testELF describes an ELF image for buildELF.
type testELF struct {
	class      int // 32 or 64
	machine    uint16
	notes      []testNote // in one PT_NOTE segment; none means no PT_NOTE
	noteAlign  uint64     // p_align of the PT_NOTE segment; 0 means 4
	segs       []testSeg
	extraBytes int // appended to the note segment data (and its filesz)
}

// pvhNote returns a XEN_ELFNOTE_PHYS32_ENTRY note with a 4-byte descriptor.
func pvhNote(entry uint32) testNote {
	return testNote{name: "Xen\x00", typ: xenElfnotePhys32Entry, desc: binary.LittleEndian.AppendUint32(nil, entry)}
}

// validELF returns a small valid PVH kernel of the given class: one segment
// at 1 MiB with 0x20 bytes of code and 0x100 bytes in memory.
func validELF(class int) testELF {
	code := make([]byte, 0x20)
	for i := range code {
		code[i] = byte(0x90 + i)
	}
	m := uint16(emX86_64)
	if class == 32 {
		m = em386
	}
	return testELF{
		class: class, machine: m,
		notes: []testNote{pvhNote(0x100000)},
		segs:  []testSeg{{paddr: 0x100000, data: code, memsz: 0x100}},
	}
}

// build lays out header, program headers (PT_NOTE first), note data and
// segment data, in that order.
func (e testELF) build() []byte {
	ehsize, phsize := ehdr64Size, phdr64Size
	if e.class == 32 {
		ehsize, phsize = ehdr32Size, phdr32Size
	}
	align := e.noteAlign
	if align == 0 {
		align = 4
	}
	var notes []byte
	for _, n := range e.notes {
		notes = appendNote(notes, n, align)
	}
	notes = append(notes, make([]byte, e.extraBytes)...)
	nph := len(e.segs)
	if len(e.notes) > 0 || e.extraBytes > 0 {
		nph++
	}
	img := make([]byte, ehsize+nph*phsize)
	copy(img, "\x7fELF")
	img[4], img[5], img[6] = elfClass32, elfData2LSB, 1
	if e.class == 64 {
		img[4] = elfClass64
	}
	le.PutUint16(img[16:], etExec)
	le.PutUint16(img[18:], e.machine)
	le.PutUint32(img[20:], 1)
	if e.class == 32 {
		le.PutUint32(img[28:], uint32(ehsize))
		le.PutUint16(img[40:], uint16(ehsize))
		le.PutUint16(img[42:], uint16(phsize))
		le.PutUint16(img[44:], uint16(nph))
	} else {
		le.PutUint64(img[32:], uint64(ehsize))
		le.PutUint16(img[52:], uint16(ehsize))
		le.PutUint16(img[54:], uint16(phsize))
		le.PutUint16(img[56:], uint16(nph))
	}
	ph := ehsize
	if len(e.notes) > 0 || e.extraBytes > 0 {
		putPhdr(img[ph:], e.class, ptNote, uint64(len(img)), 0, uint64(len(notes)), uint64(len(notes)), align)
		ph += phsize
		img = append(img, notes...)
	}
	for _, s := range e.segs {
		memsz := s.memsz
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		putPhdr(img[ph:], e.class, ptLoad, uint64(len(img)), s.paddr, uint64(len(s.data)), memsz, 0x1000)
		ph += phsize
		img = append(img, s.data...)
	}
	return img
}

// appendNote encodes one note with name and descriptor aligned from the
// note's start.
func appendNote(b []byte, n testNote, align uint64) []byte {
	start := len(b)
	b = le.AppendUint32(b, uint32(len(n.name)))
	b = le.AppendUint32(b, uint32(len(n.desc)))
	b = le.AppendUint32(b, n.typ)
	b = append(b, n.name...)
	b = pad(b, start, align)
	b = append(b, n.desc...)
	return pad(b, start, align)
}

func pad(b []byte, start int, align uint64) []byte {
	for uint64(len(b)-start)%align != 0 {
		b = append(b, 0)
	}
	return b
}

// putPhdr writes one program header.
func putPhdr(b []byte, class int, typ uint32, off, paddr, filesz, memsz, align uint64) {
	if class == 32 {
		le.PutUint32(b[0:], typ)
		le.PutUint32(b[4:], uint32(off))
		le.PutUint32(b[8:], uint32(paddr))
		le.PutUint32(b[12:], uint32(paddr))
		le.PutUint32(b[16:], uint32(filesz))
		le.PutUint32(b[20:], uint32(memsz))
		le.PutUint32(b[24:], 5)
		le.PutUint32(b[28:], uint32(align))
		return
	}
	le.PutUint32(b[0:], typ)
	le.PutUint32(b[4:], 5)
	le.PutUint64(b[8:], off)
	le.PutUint64(b[16:], paddr|0xffffffff80000000)
	le.PutUint64(b[24:], paddr)
	le.PutUint64(b[32:], filesz)
	le.PutUint64(b[40:], memsz)
	le.PutUint64(b[48:], align)
}

// phdrOff returns the file offset of program header i in img built by
// testELF.build.
func phdrOff(class, i int) int {
	if class == 32 {
		return ehdr32Size + i*phdr32Size
	}
	return ehdr64Size + i*phdr64Size
}

// fakeMem is guest RAM [0, len(buf)) for tests.
type fakeMem struct {
	buf []byte
	err error // returned by every Slice call if set
}

func newFakeMem(size int) *fakeMem {
	m := &fakeMem{buf: make([]byte, size)}
	for i := range m.buf {
		m.buf[i] = 0xAA
	}
	return m
}

// Slice implements Memory.
func (m *fakeMem) Slice(gpa, n uint64) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if end := gpa + n; end < gpa || end > uint64(len(m.buf)) {
		return nil, fmt.Errorf("%#x+%#x is not guest RAM", gpa, n)
	}
	return m.buf[gpa : gpa+n], nil
}

// ramLayout splits size bytes of guest RAM around the 32-bit MMIO hole the
// way vmm/memory.Layout does: [0, min(size, 3 GiB)) and, if size is
// larger, the rest from 4 GiB. It returns nil for size 0.
func ramLayout(size uint64) []Region {
	if size == 0 {
		return nil
	}
	if size <= MMIOHoleStart {
		return []Region{{GPA: 0, Size: size}}
	}
	return []Region{
		{GPA: 0, Size: MMIOHoleStart},
		{GPA: MMIOHoleEnd, Size: size - MMIOHoleStart},
	}
}
