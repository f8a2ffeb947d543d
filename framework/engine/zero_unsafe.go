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
