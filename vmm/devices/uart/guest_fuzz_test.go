package uart

import (
	"bytes"
	"context"
	"testing"
)

// FuzzGuestPorts plays a guest doing port I/O of any width at any
// offset, mixed with host input (Enqueue): nothing panics, the registers
// read back what a 16550A shows (LSR.DR iff the FIFO holds data, IIR a
// pending-interrupt set), and after every step the UART saves, encodes,
// decodes and restores into a fresh UART that saves the same bytes (a
// guest must never make its VM unmigratable) and reads the same
// registers.
func FuzzGuestPorts(f *testing.F) {
	// Linux's probe and setup: DLAB, divisor, 8N1, FIFO, IER; a byte out, one in.
	f.Add([]byte{1, 3, 0x80, 1, 0, 1, 1, 1, 0, 1, 3, 3, 1, 2, 0xc7, 1, 1, 3, 1, 0, 'x', 2, 2, 'a', 'b', 0, 2, 0, 0, 0, 5})
	// Loopback mode fills the FIFO from the transmitter.
	f.Add([]byte{1, 4, 0x10, 1, 1, 1, 1, 0, 'a', 1, 0, 'b', 0, 0, 0, 5, 1, 2, 2})
	f.Fuzz(func(t *testing.T, script []byte) {
		u := New(nil)
		defer u.Close(context.Background())
		for steps := 0; len(script) >= 2 && steps < 128; steps++ {
			op, off := script[0]%4, uint64(script[1])
			script = script[2:]
			switch op {
			case 0: // IN of one byte (or of a width the UART ignores)
				b := make([]byte, 1+int(off>>6)%3)
				u.Read(off%10, b)
			case 1: // OUT
				if len(script) == 0 {
					return
				}
				u.Write(off%10, script[:1+int(off>>6)%2])
				script = script[1:]
			case 2: // host input
				n := min(int(off%80), len(script))
				u.Enqueue(script[:n])
				script = script[n:]
			case 3:
				checkRegisters(t, u)
			}
			checkMigrates(t, u)
		}
	})
}

// checkRegisters reads LSR and IIR as a guest would (IIR's read clears
// the pending set) and checks them against the saved state.
func checkRegisters(t *testing.T, u *UART) {
	t.Helper()
	s := u.Save()
	b := make([]byte, 1)
	u.Read(offLSR, b)
	if dr := b[0]&lsrDR != 0; dr != (len(s.RX) > 0) {
		t.Fatalf("LSR %#02x with %d bytes in the FIFO", b[0], len(s.RX))
	}
	if s.LCR&lcrDLAB != 0 {
		return
	}
	u.Read(offIIR, b)
	if id := b[0] &^ iirFIFOBits; id != iirNone && id != iirRDA && id != iirTHRE {
		t.Fatalf("IIR %#02x is no interrupt identification", b[0])
	}
}

// checkMigrates saves u, restores it into a fresh UART and compares.
func checkMigrates(t *testing.T, u *UART) {
	t.Helper()
	b, err := u.Save().MarshalBinary()
	if err != nil {
		t.Fatalf("the guest made the UART's state unsaveable: %v", err)
	}
	var s State
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatalf("decode the UART's state: %v", err)
	}
	v := New(nil)
	defer v.Close(context.Background())
	if err := v.Restore(s); err != nil {
		t.Fatalf("the guest made its VM unmigratable: %v", err)
	}
	again, err := v.Save().MarshalBinary()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("restored UART saves %x (%v), the source %x", again, err, b)
	}
	for _, off := range []uint64{offIER, offLCR, offMCR, offLSR, offMSR, offSCR} {
		x, y := make([]byte, 1), make([]byte, 1)
		u.Read(off, x)
		v.Read(off, y)
		if x[0] != y[0] {
			t.Fatalf("register %d reads %#02x on the source, %#02x restored", off, x[0], y[0])
		}
	}
}
