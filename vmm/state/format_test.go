package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func sample() []Section {
	var w Writer
	w.U32(0xdeadbeef)
	w.String("hello")
	return []Section{
		{Type: SecMachine, Data: []byte{1, 2, 3}},
		{Type: SecVCPU, ID: 1, Data: w.Bytes()},
		{Type: SecUART, Data: nil},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want[2].Data = []byte{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(Encode(x)) = %+v, want %+v", got, want)
	}
	empty, err := Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Decode(empty); err != nil || len(s) != 0 {
		t.Fatalf("empty blob: %v, %v", s, err)
	}
}

// TestGolden pins the byte layout: a change here is a format change and
// needs a new Version. Run with -update to rewrite after bumping it.
func TestGolden(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "sample.golden")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
	}
	if _, err := Decode(want); err != nil {
		t.Fatalf("golden blob no longer decodes: %v", err)
	}
}

// reseal recomputes the CRC after an edit, so a test reaches the checks
// behind it.
func reseal(b []byte) []byte {
	body := b[:len(b)-4]
	binary.LittleEndian.PutUint32(b[len(body):], crc32.Checksum(body, castagnoli))
	return b
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"magic only", []byte(Magic), "truncated"},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"version 0", edit(func(b []byte) []byte { b[8] = 0; return reseal(b) }), "version 0 is invalid"},
		{"version 2", edit(func(b []byte) []byte { b[8] = 2; return reseal(b) }), "version 2 is newer"},
		{"bad CRC", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "CRC-32C"},
		{"flipped payload bit", edit(func(b []byte) []byte { b[30] ^= 0x10; return b }), "CRC-32C"},
		{"truncated", good[:len(good)-5], "CRC-32C"},
		{"truncated resealed", edit(func(b []byte) []byte { return reseal(b[:len(b)-5]) }), "truncated"},
		{"header flags", edit(func(b []byte) []byte { b[10] = 1; return reseal(b) }), "header flags"},
		{"too many sections", edit(func(b []byte) []byte { b[12] = 0xff; b[13] = 0xff; return reseal(b) }), "sections, at most"},
		{"count too high", edit(func(b []byte) []byte { b[12]++; return reseal(b) }), "header truncated"},
		{"count too low", edit(func(b []byte) []byte { b[12]--; return reseal(b) }), "after the last"},
		{"type 0", edit(func(b []byte) []byte { b[16] = 0; return reseal(b) }), "unknown type 0"},
		{"type 99", edit(func(b []byte) []byte { b[16] = 99; return reseal(b) }), "unknown type 99"},
		{"section flags", edit(func(b []byte) []byte { b[18] = 1; return reseal(b) }), "flags"},
		{"section length huge", edit(func(b []byte) []byte { b[27] = 0x80; return reseal(b) }), "only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			if err == nil || !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an ErrBadState with %q", err, tc.want)
			}
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	if _, err := Encode([]Section{{Type: 0}}); err == nil {
		t.Error("type 0 encoded")
	}
	if _, err := Encode(make([]Section, MaxSections+1)); err == nil {
		t.Error("too many sections encoded")
	}
	if _, err := Encode([]Section{{Type: SecVCPU, Data: make([]byte, MaxSize)}}); err == nil {
		t.Error("oversized blob encoded")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good)
	empty, _ := Encode(nil)
	f.Add(empty)
	f.Add([]byte(Magic + "\x01\x00\x00\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= headerSize+trailerSize && string(b[:8]) == Magic {
			reseal(b) // reach past the CRC most of the time
		}
		secs, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error does not wrap ErrBadState: %v", err)
			}
			return
		}
		again, err := Encode(secs)
		if err != nil {
			t.Fatalf("decoded sections do not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}
