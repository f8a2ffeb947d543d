package uart

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSaveRestore(t *testing.T) {
	src := New(nil)
	defer src.Close(context.Background())
	src.Write(offLCR, []byte{0x83})
	src.Write(offData, []byte{0x01})
	src.Write(offLCR, []byte{0x1b})
	src.Write(offSCR, []byte{0x42})
	src.Write(offIER, []byte{ierRDI})
	// Wrap the ring: fill, drain some, refill.
	src.Enqueue([]byte(strings.Repeat("a", 60)))
	b := []byte{0}
	for range 58 {
		src.Read(offData, b)
	}
	src.Enqueue([]byte("bcdefghij"))
	want := State{DLL: 0x01, DLM: 0x00, IER: ierRDI, IIR: iirRDA, LCR: 0x1b, MCR: 0x08, SCR: 0x42, RX: []byte("aabcdefghij")}
	s := src.Save()
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Save = %+v, want %+v", s, want)
	}
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var dec State
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	dst := New(nil)
	defer dst.Close(context.Background())
	raised := 0
	dst.SetInterruptLine(func() { raised++ })
	if err := dst.Restore(dec); err != nil {
		t.Fatal(err)
	}
	if raised != 1 {
		t.Fatalf("Restore raised %d interrupts, want 1 (RDA pending and enabled)", raised)
	}
	if got := dst.Save(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state %+v, want %+v", got, want)
	}
	var rx []byte
	for {
		dst.Read(offLSR, b)
		if b[0]&lsrDR == 0 {
			break
		}
		dst.Read(offData, b)
		rx = append(rx, b[0])
	}
	if string(rx) != "aabcdefghij" {
		t.Fatalf("restored FIFO read %q", rx)
	}
}

func TestRestoreNoPendingNoRaise(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	raised := 0
	u.SetInterruptLine(func() { raised++ })
	// THRE pending but disabled: no edge.
	if err := u.Restore(State{IIR: iirTHRE, LCR: 3, MCR: 8}); err != nil {
		t.Fatal(err)
	}
	if raised != 0 {
		t.Fatalf("raised %d", raised)
	}
}

func TestStateValidate(t *testing.T) {
	tests := []struct {
		name    string
		s       State
		wantErr string
	}{
		{"reset", State{IIR: 1, LCR: 3, MCR: 8, DLL: 12}, ""},
		{"both pending", State{IIR: 6, IER: 3}, ""},
		{"IER high bits", State{IIR: 1, IER: 0x10}, "IER 0x10"},
		{"IIR zero", State{IIR: 0}, "IIR 0x00"},
		{"IIR none and pending", State{IIR: 3}, "IIR 0x03"},
		{"IIR FIFO bits", State{IIR: 0xc1}, "IIR 0xc1"},
		{"FIFO too long", State{IIR: 1, RX: make([]byte, 65)}, "65 bytes"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate = %v, want %q", tt.name, err, tt.wantErr)
		}
		if err != nil {
			if rerr := New(nil).Restore(tt.s); rerr == nil {
				t.Errorf("%s: Restore accepted an invalid state", tt.name)
			}
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	good, err := State{IIR: 1, LCR: 3, MCR: 8, RX: []byte("hi")}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	tests := []struct {
		name    string
		b       []byte
		wantErr string
	}{
		{"empty", nil, "truncated"},
		{"truncated", good[:len(good)-1], "want 20"},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"version 0", edit(func(b []byte) []byte { b[4] = 0; return b }), "version 0"},
		{"version 2", edit(func(b []byte) []byte { b[4] = 2; return b }), "version 2"},
		{"bad CRC", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "CRC"},
		{"flipped register", edit(func(b []byte) []byte { b[8] ^= 0x40; return b }), "CRC"},
		{"extra byte", append(append([]byte{}, good...), 0), "want 20"},
	}
	for _, tt := range tests {
		var s State
		err := s.UnmarshalBinary(tt.b)
		if err == nil || !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: UnmarshalBinary = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := (State{IIR: 0}).MarshalBinary(); err == nil {
		t.Error("MarshalBinary accepted an invalid state")
	}
}

func FuzzUnmarshalState(f *testing.F) {
	for _, s := range []State{{IIR: 1, LCR: 3, MCR: 8}, {IIR: 6, IER: 3, RX: []byte("abc")}} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("decoded state does not re-encode to the same bytes: %v", err)
		}
		u := New(nil)
		defer u.Close(context.Background())
		if err := u.Restore(s); err != nil {
			t.Fatalf("Restore of a decoded state: %v", err)
		}
	})
}
