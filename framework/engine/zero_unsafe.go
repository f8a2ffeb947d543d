package engine

import "unsafe"

// isZero reports whether a page (4096 bytes, 8-byte aligned) is all zero,
// a word at a time with early exit.
func isZero(page []byte) bool {
	// Guest RAM mappings are page-aligned, so the uint64 view is aligned.
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(page))), len(page)/8)
	for i := 0; i < len(words); i += 8 {
		if words[i]|words[i+1]|words[i+2]|words[i+3]|words[i+4]|words[i+5]|words[i+6]|words[i+7] != 0 {
			return false
		}
	}
	return true
}

// pageHash is a fast 64-bit hash of a page for the page-exact check:
// both sides compute it, so it must not depend on the process.
func pageHash(page []byte) uint64 {
	// Same alignment argument as isZero.
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(page))), len(page)/8)
	h := uint64(0x9e3779b97f4a7c15)
	for i, w := range words {
		h = (h ^ (w + uint64(i))) * 0xff51afd7ed558ccd
		h ^= h >> 29
	}
	if h == hashFree {
		h = 1 // hashFree is reserved for "free at switch-over: not compared"
	}
	return h
}
