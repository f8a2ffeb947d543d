package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzPages is reused across fuzz inputs: PAGES data lands here.
var fuzzPages = make([]byte, MaxPagesPerFrame*PageSize)

// FuzzDecoder feeds arbitrary bytes to the decoder: it must never panic,
// never hold more than MaxPayload bytes of buffer, keep every decoded
// value in bounds, and re-encode every frame it accepts (except page
// data), in the version it was read in, to exactly the bytes it read.
func FuzzDecoder(f *testing.F) {
	var all []byte
	for _, g := range goldenFrames() {
		f.Add(g.bytes)
		all = append(all, g.bytes...)
	}
	f.Add(all)
	f.Add([]byte(Magic))
	for _, g := range goldenFrames() { // the previous version's, as a destination reads them
		f.Add(answerIn(f, g, MinVersion))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := newDecoder(in)
		off := 0
		for {
			fr, err := d.Next()
			if cap(d.scratch) > MaxPayload {
				t.Fatalf("decoder buffer grew to %d bytes", cap(d.scratch))
			}
			if err != nil {
				if err != io.EOF && !isProtocol(err) {
					t.Fatalf("error outside the protocol class: %v", err)
				}
				return
			}
			checkBounds(t, fr)
			size := HeaderSize + int(fr.Length)
			if fr.Type == TypePages {
				if err := d.ReadPages(fuzzPages[:int(fr.Run.Count)*PageSize]); err != nil {
					if !isProtocol(err) {
						t.Fatalf("ReadPages: error outside the protocol class: %v", err)
					}
					return
				}
			} else if re := reencode(t, fr); !bytes.Equal(re, in[off:off+size]) {
				t.Fatalf("%v re-encodes to\n%x\nread\n%x", fr.Type, re, in[off:off+size])
			}
			off += size
		}
	})
}

func isProtocol(err error) bool {
	return errors.Is(err, ErrProtocol)
}

func checkBounds(t *testing.T, f Frame) {
	t.Helper()
	switch {
	case f.Length > MaxPayload:
		t.Fatalf("payload length %d accepted", f.Length)
	case len(f.Payload) > MaxMessage:
		t.Fatalf("message of %d bytes accepted", len(f.Payload))
	case len(f.Reason) > MaxReason:
		t.Fatalf("reason of %d bytes accepted", len(f.Reason))
	case len(f.Hello.RAM) > MaxRegions:
		t.Fatalf("HELLO with %d regions accepted", len(f.Hello.RAM))
	case f.Version < MinVersion || f.Version > Version:
		t.Fatalf("frame of version %d accepted", f.Version)
	case f.Version == 1 && f.Hello.Tag != [TagSize]byte{}:
		t.Fatalf("version-1 HELLO with a tag")
	case f.Type == TypePages && (f.Run.Count == 0 || f.Run.Count > MaxPagesPerFrame):
		t.Fatalf("PAGES of %d pages accepted", f.Run.Count)
	case f.Type == TypeZero && (f.Run.Count == 0 || f.Run.Count > MaxZeroPages):
		t.Fatalf("ZERO of %d pages accepted", f.Run.Count)
	case f.Run.Strided() && (f.Type != TypeZero || f.Run.Cell != goldenCell || f.Run.Every != goldenEvery):
		t.Fatalf("%v run strided by %d cells of %d pages accepted", f.Type, f.Run.Every, f.Run.Cell)
	case f.Run.Strided() != (f.Flags&FlagStrided != 0):
		t.Fatalf("strided %v with flags %#x", f.Run.Strided(), f.Flags)
	}
}

func reencode(t *testing.T, f Frame) []byte {
	t.Helper()
	var b []byte
	var err error
	switch f.Type {
	case TypeHello:
		b, err = AppendHelloIn(nil, f.Hello, f.Version)
	case TypeZero:
		b, err = AppendZero(nil, f.Seq, f.Run)
	case TypeAck:
		b = AppendAck(nil, f.Seq)
	case TypeMsg:
		b, err = AppendMsg(nil, f.Kind, f.Payload)
	case TypeBye:
		b = AppendBye(nil, f.Reason)
	case TypeAbort:
		b = AppendAbort(nil, f.Code, f.Reason)
	}
	if err != nil {
		t.Fatalf("re-encode %v: %v", f.Type, err)
	}
	// Seq is carried but unused on these types; keep what was read.
	if len(b) >= HeaderSize {
		h := f.Header
		h.Put(b)
	}
	return b
}
