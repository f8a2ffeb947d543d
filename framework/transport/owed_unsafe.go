package transport

import "unsafe"

// owedWords views the owed set's mapping as words: the mapping is
// page-aligned and its length a multiple of 8, so the view is aligned.
func owedWords(mem []byte) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), len(mem)/8)
}
