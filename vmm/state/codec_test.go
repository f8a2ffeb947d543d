package state

import (
	"errors"
	"strings"
	"testing"
)

type pair struct {
	A uint32
	B [3]uint16
	C int64
}

func TestCodecRoundTrip(t *testing.T) {
	var w Writer
	w.U8(7)
	w.U16(0x1234)
	w.U32(0xdeadbeef)
	w.U64(1 << 60)
	w.Bool(true)
	w.String("uart")
	w.Blob([]byte{9, 8})
	w.Struct(pair{1, [3]uint16{2, 3, 4}, -5})
	w.U32(2)
	w.Struct([]pair{{A: 10}, {A: 11}})

	r := NewReader(w.Bytes(), "test")
	if r.U8() != 7 || r.U16() != 0x1234 || r.U32() != 0xdeadbeef || r.U64() != 1<<60 || !r.Bool() {
		t.Fatal("scalars differ")
	}
	if r.String(16, "name") != "uart" || string(r.Blob(2, "blob")) != "\x09\x08" {
		t.Fatal("blobs differ")
	}
	var p pair
	r.Struct(&p)
	if p != (pair{1, [3]uint16{2, 3, 4}, -5}) {
		t.Fatalf("struct %+v", p)
	}
	ps := make([]pair, r.Count(4, "pairs"))
	r.Struct(ps)
	if len(ps) != 2 || ps[1].A != 11 {
		t.Fatalf("slice %+v", ps)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReaderErrors(t *testing.T) {
	var w Writer
	w.U32(5)
	w.U8(2)
	for _, tc := range []struct {
		name string
		read func(r *Reader)
		want string
	}{
		{"past end", func(r *Reader) { r.U64(); r.U64() }, "truncated"},
		{"leftover", func(r *Reader) { r.U32() }, "unexpected bytes"},
		{"blob too long", func(r *Reader) { r.Blob(4, "name") }, "at most 4"},
		{"blob past end", func(r *Reader) { r.Blob(8, "name") }, "truncated"},
		{"count", func(r *Reader) { r.Count(3, "things") }, "5 things, at most 3"},
		{"bool", func(r *Reader) { r.U32(); r.Bool() }, "boolean byte 2"},
		{"struct", func(r *Reader) { var p pair; r.Struct(&p) }, "truncated"},
	} {
		r := NewReader(w.Bytes(), "payload")
		tc.read(r)
		err := r.Close()
		if err == nil || !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "payload") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
