package uart

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// State is the guest-visible state of a UART, for saving on the migration
// source and restoring on the destination. LSR and MSR are derived from the
// other registers and the FIFO, so they are not stored.
type State struct {
	DLL, DLM byte
	IER      byte
	IIR      byte // pending interrupts: 0x01 (none), or 0x02|0x04 bits
	LCR      byte
	MCR      byte
	SCR      byte
	RX       []byte // receive FIFO contents, oldest first, at most FIFOSize
}

// Save returns a copy of the UART's state. Bytes still waiting to be
// written to out belong to the host, not the guest, and are not included.
func (u *UART) Save() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := State{DLL: u.dll, DLM: u.dlm, IER: u.ier, IIR: u.iir, LCR: u.lcr, MCR: u.mcr, SCR: u.scr}
	s.RX = make([]byte, u.rxLen)
	for i := range s.RX {
		s.RX[i] = u.rx[(u.rxHd+i)%FIFOSize]
	}
	return s
}

// Restore replaces the UART's registers and receive FIFO with s. If s has
// an enabled interrupt pending, Restore raises the interrupt line once (set
// it with SetInterruptLine first), because an edge in flight at save time
// may be missing from the interrupt controller's state; a spurious
// interrupt costs the guest one IIR read, a lost one can stall its driver.
func (u *UART) Restore(s State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("restore uart: %w", err)
	}
	u.mu.Lock()
	u.dll, u.dlm, u.ier, u.iir, u.lcr, u.mcr, u.scr = s.DLL, s.DLM, s.IER, s.IIR, s.LCR, s.MCR, s.SCR
	u.rxHd, u.rxLen = 0, len(s.RX)
	copy(u.rx[:], s.RX)
	fire := (u.iir&iirRDA != 0 && u.ier&ierRDI != 0) || (u.iir&iirTHRE != 0 && u.ier&ierTHRI != 0)
	raise := u.raise
	u.mu.Unlock()
	if fire && raise != nil {
		raise()
	}
	return nil
}

// Validate checks that s is a state the emulation can reach.
func (s State) Validate() error {
	if s.IER&^ierValidBits != 0 {
		return fmt.Errorf("IER %#02x has bits a 16550A does not implement", s.IER)
	}
	if s.IIR != iirNone && (s.IIR == 0 || s.IIR&^(iirRDA|iirTHRE) != 0) {
		return fmt.Errorf("IIR %#02x is not a pending-interrupt set", s.IIR)
	}
	if len(s.RX) > FIFOSize {
		return fmt.Errorf("receive FIFO holds %d bytes; at most %d fit", len(s.RX), FIFOSize)
	}
	return nil
}

// stateMagic starts an encoded State; stateVersion 0 is reserved as invalid.
const (
	stateMagic   = "FUAR"
	stateVersion = 1
	stateFixed   = 4 + 2 + 7 + 1 // magic, version, registers, FIFO length
)

// ErrBadState is wrapped by every UnmarshalBinary error.
var ErrBadState = errors.New("bad uart state")

// MarshalBinary encodes s as: magic "FUAR", version u16 (1), DLL, DLM,
// IER, IIR, LCR, MCR, SCR, FIFO length u8, FIFO bytes, CRC-32 (IEEE) u32 of
// everything before it. Integers are little-endian.
func (s State) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("encode uart state: %w", err)
	}
	b := make([]byte, 0, stateFixed+len(s.RX)+4)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint16(b, stateVersion)
	b = append(b, s.DLL, s.DLM, s.IER, s.IIR, s.LCR, s.MCR, s.SCR, byte(len(s.RX)))
	b = append(b, s.RX...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// UnmarshalBinary decodes a State written by MarshalBinary, checking magic,
// version, length, CRC and register values.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) < stateFixed+4 {
		return fmt.Errorf("%w: %d bytes, truncated", ErrBadState, len(b))
	}
	if string(b[:4]) != stateMagic {
		return fmt.Errorf("%w: bad magic %q", ErrBadState, b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != stateVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrBadState, v, stateVersion)
	}
	n := int(b[stateFixed-1])
	if len(b) != stateFixed+n+4 {
		return fmt.Errorf("%w: %d bytes, want %d for a %d-byte FIFO", ErrBadState, len(b), stateFixed+n+4, n)
	}
	body := b[:len(b)-4]
	if got, want := crc32.ChecksumIEEE(body), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return fmt.Errorf("%w: CRC %#08x, want %#08x", ErrBadState, got, want)
	}
	r := b[6:]
	st := State{DLL: r[0], DLM: r[1], IER: r[2], IIR: r[3], LCR: r[4], MCR: r[5], SCR: r[6]}
	st.RX = append([]byte{}, b[stateFixed:stateFixed+n]...)
	if err := st.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadState, err)
	}
	*s = st
	return nil
}
