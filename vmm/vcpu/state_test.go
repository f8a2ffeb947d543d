package vcpu

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/state"
)

func sampleState() State {
	s := State{
		MPState: kvm.MPState{State: 0},
		Regs:    kvm.Regs{Rip: 0x1000, Rsp: 0x8000, Rflags: 0x202, Rax: 42},
		Xsave:   make([]byte, kvm.XsaveSize+64),
		MSRs:    []kvm.MSREntry{{Index: 0x10, Data: 12345}, {Index: 0x6e0}},
		CPUID:   []kvm.CPUIDEntry2{{Function: 0, Eax: 0xd}, {Function: 1, Ecx: 1 << 31}},
		TSCKHz:  2_596_128,
	}
	s.Sregs.Cr0, s.Sregs.Efer, s.Sregs.Cs.Selector = 0x80050033, 0xd01, 0x33
	s.XCRs.Nr_xcrs, s.XCRs.Xcrs[0].Value = 1, 7
	s.DebugRegs.Dr7 = 0x400
	s.LAPIC.Regs[0x20] = 1
	s.Events.Raw[0] = 3
	s.Xsave[0], s.Xsave[len(s.Xsave)-1] = 0x7f, 0x03
	return s
}

func TestStateRoundTrip(t *testing.T) {
	want := sampleState()
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got State
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, want)
	}
}

func TestStateDecodeErrors(t *testing.T) {
	good, err := sampleState().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	fixed := 4 + 144 + 312 + 392 + 128 + 1024 + 64 + 4 // up to the XSAVE length
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"extra byte", append(append([]byte{}, good...), 0), "unexpected bytes"},
		{"xsave huge", patch(good, fixed, 0xff, 0xff, 0xff, 0x7f), "XSAVE area"},
		{"xsave small", patch(good, fixed, 0x10, 0, 0, 0), "unexpected bytes"},
	} {
		var s State
		err := s.UnmarshalBinary(tc.b)
		if err == nil || !errors.Is(err, state.ErrBadState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := sampleState()
	bad.Xsave = bad.Xsave[:100]
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("a short XSAVE area encoded")
	}
}

func patch(b []byte, off int, p ...byte) []byte {
	b = append([]byte{}, b...)
	copy(b[off:], p)
	return b
}

func FuzzStateUnmarshal(f *testing.F) {
	good, _ := sampleState().MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, state.ErrBadState) {
				t.Fatalf("error does not wrap state.ErrBadState: %v", err)
			}
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("decoded state does not re-encode to the same bytes: %v", err)
		}
	})
}
