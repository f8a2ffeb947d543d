package state

import (
	"encoding/binary"
	"fmt"
)

// Writer appends little-endian fields to a section payload.
type Writer struct {
	b []byte
}

// Bytes returns what was written.
func (w *Writer) Bytes() []byte { return w.b }

// U8 appends v.
func (w *Writer) U8(v uint8) { w.b = append(w.b, v) }

// U16 appends v.
func (w *Writer) U16(v uint16) { w.b = binary.LittleEndian.AppendUint16(w.b, v) }

// U32 appends v.
func (w *Writer) U32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }

// U64 appends v.
func (w *Writer) U64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

// Bool appends v as one byte, 0 or 1.
func (w *Writer) Bool(v bool) {
	if v {
		w.U8(1)
	} else {
		w.U8(0)
	}
}

// Blob appends len(p) as a u32, then p.
func (w *Writer) Blob(p []byte) {
	w.U32(uint32(len(p)))
	w.b = append(w.b, p...)
}

// String appends s as a Blob.
func (w *Writer) String(s string) { w.Blob([]byte(s)) }

// Struct appends a fixed-size value (a KVM uapi struct, or a slice of
// them) field by field, which for the godefs-generated structs of vmm/kvm
// is exactly the kernel's layout on x86-64.
func (w *Writer) Struct(v any) {
	var err error
	if w.b, err = binary.Append(w.b, binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("state: %T is not a fixed-size value: %v", v, err)) // a programming error
	}
}

// Reader takes little-endian fields off a section payload. The first read
// past the end (or bad value) sets a sticky error; later reads return
// zeros. Check Close at the end.
type Reader struct {
	b   []byte
	off int
	err error
	ctx string
}

// NewReader reads p; what names the payload in errors.
func NewReader(p []byte, what string) *Reader { return &Reader{b: p, ctx: what} }

// Fail records an error about a decoded value (the first one wins).
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrBadState, r.ctx, fmt.Sprintf(format, args...))
	}
}

// Err is the first error so far.
func (r *Reader) Err() error { return r.err }

// Close reports the first error, or leftover bytes.
func (r *Reader) Close() error {
	if r.err == nil && r.off != len(r.b) {
		r.Fail("%d unexpected bytes at the end", len(r.b)-r.off)
	}
	return r.err
}

func (r *Reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.Fail("%s: %d bytes needed at offset %d, %d left (truncated)", what, n, r.off, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// U8 reads a byte.
func (r *Reader) U8() uint8 {
	if p := r.take(1, "u8"); p != nil {
		return p[0]
	}
	return 0
}

// U16 reads a u16.
func (r *Reader) U16() uint16 {
	if p := r.take(2, "u16"); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

// U32 reads a u32.
func (r *Reader) U32() uint32 {
	if p := r.take(4, "u32"); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// U64 reads a u64.
func (r *Reader) U64() uint64 {
	if p := r.take(8, "u64"); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	switch v := r.U8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.Fail("boolean byte %d", v)
		return false
	}
}

// Blob reads a u32 length, at most max, and that many bytes (a copy).
func (r *Reader) Blob(max int, what string) []byte {
	n := r.U32()
	if r.err == nil && uint64(n) > uint64(max) {
		r.Fail("%s of %d bytes, at most %d", what, n, max)
		return nil
	}
	return append([]byte(nil), r.take(int(n), what)...)
}

// String reads a Blob as a string.
func (r *Reader) String(max int, what string) string { return string(r.Blob(max, what)) }

// Count reads a u32 element count, at most max.
func (r *Reader) Count(max int, what string) int {
	n := r.U32()
	if r.err == nil && uint64(n) > uint64(max) {
		r.Fail("%d %s, at most %d", n, what, max)
		return 0
	}
	return int(n)
}

// Struct reads a fixed-size value written by Writer.Struct into *v (v is
// a pointer, or a slice whose length says how many elements).
func (r *Reader) Struct(v any) {
	n := binary.Size(v)
	if n < 0 {
		panic(fmt.Sprintf("state: %T is not a fixed-size value", v)) // a programming error
	}
	p := r.take(n, fmt.Sprintf("%T", v))
	if p == nil {
		return
	}
	if _, err := binary.Decode(p, binary.LittleEndian, v); err != nil {
		r.Fail("decode %T: %v", v, err)
	}
}
