package e2e

import "encoding/binary"

// elfWithoutNote is a minimal valid ELF64 executable with one PT_LOAD at
// 1 MiB and no PVH note.
func elfWithoutNote() []byte {
	b := make([]byte, 64+56+16)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little-endian, version 1
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)     // ET_EXEC
	le.PutUint16(b[18:], 62)    // EM_X86_64
	le.PutUint32(b[20:], 1)     // version
	le.PutUint64(b[24:], 1<<20) // entry
	le.PutUint64(b[32:], 64)    // phoff
	le.PutUint16(b[52:], 64)    // ehsize
	le.PutUint16(b[54:], 56)    // phentsize
	le.PutUint16(b[56:], 1)     // phnum
	ph := b[64:]
	le.PutUint32(ph[0:], 1)      // PT_LOAD
	le.PutUint32(ph[4:], 5)      // R+X
	le.PutUint64(ph[8:], 120)    // offset
	le.PutUint64(ph[16:], 1<<20) // vaddr
	le.PutUint64(ph[24:], 1<<20) // paddr
	le.PutUint64(ph[32:], 16)    // filesz
	le.PutUint64(ph[40:], 16)    // memsz
	return b
}
