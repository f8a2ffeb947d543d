package pvh

import "fmt"

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY from Xen's
// include/public/elfnote.h.
const xenElfnotePhys32Entry = 18

// noteHeaderSize is the size of Elf32_Nhdr and Elf64_Nhdr (both are three
// 32-bit words).
const noteHeaderSize = 12

// noteAlign returns the alignment of name and descriptor inside a PT_NOTE
// segment: 4 bytes, except 8 in an ELF64 segment whose p_align is 8 (the
// convention binutils and Linux follow for GNU property notes).
func noteAlign(class int, palign uint64) uint64 {
	if class == 64 && palign == 8 {
		return 8
	}
	return 4
}

// findEntryNote walks the notes in data (the contents of one PT_NOTE
// segment) and returns the descriptor of the first note named "Xen" of type
// XEN_ELFNOTE_PHYS32_ENTRY.
//
// The descriptor is 4 bytes in Xen's documentation and in recent Linux
// kernels; older Linux kernels emit it with _ASM_PTR, which is 8 bytes in a
// 64-bit kernel. Both are accepted; an 8-byte value must fit in 32 bits.
func findEntryNote(data []byte, align uint64) (entry uint32, found bool, err error) {
	for off := uint64(0); off < uint64(len(data)); {
		rest := data[off:]
		if len(rest) < noteHeaderSize {
			return 0, false, fmt.Errorf("truncated note at offset %#x: %d bytes left, a note header needs %d", off, len(rest), noteHeaderSize)
		}
		namesz, descsz, typ := uint64(le.Uint32(rest)), uint64(le.Uint32(rest[4:])), le.Uint32(rest[8:])
		// Offsets are aligned from the start of the note, as binutils'
		// ELF_NOTE_DESC_OFFSET and ELF_NOTE_NEXT_OFFSET do.
		descOff := alignUp(noteHeaderSize+namesz, align)
		descEnd := descOff + descsz
		if descEnd > uint64(len(rest)) {
			return 0, false, fmt.Errorf("truncated note at offset %#x: namesz %d and descsz %d run past the end of the %d-byte note segment",
				off, namesz, descsz, len(data))
		}
		name, desc := rest[noteHeaderSize:noteHeaderSize+namesz], rest[descOff:descEnd]
		if typ == xenElfnotePhys32Entry && string(name) == "Xen\x00" {
			entry, err := entryFromDesc(desc)
			if err != nil {
				return 0, false, fmt.Errorf("note at offset %#x: %w", off, err)
			}
			return entry, true, nil
		}
		// The last note's padding may be missing; the loop ends either way.
		off += alignUp(descEnd, align)
	}
	return 0, false, nil
}

// entryFromDesc decodes the XEN_ELFNOTE_PHYS32_ENTRY descriptor.
func entryFromDesc(desc []byte) (uint32, error) {
	switch len(desc) {
	case 4:
		return le.Uint32(desc), nil
	case 8:
		v := le.Uint64(desc)
		if v > 0xffff_ffff {
			return 0, fmt.Errorf("PVH entry point %#x is above 4 GiB; it must be a 32-bit physical address", v)
		}
		return uint32(v), nil
	}
	return 0, fmt.Errorf("PVH entry note has a %d-byte descriptor; want 4 (a 32-bit physical address)", len(desc))
}

// alignUp rounds n up to a multiple of a (a power of two). Callers pass
// n < 2^34, so the result cannot overflow.
func alignUp(n, a uint64) uint64 {
	return (n + a - 1) &^ (a - 1)
}
