package uart

import (
	"io"
	"sync"
)

// UART is an emulated 16550A. Its methods are safe for concurrent use: a
// vCPU thread calls Read and Write while another goroutine calls Enqueue.
// One mutex guards the registers; no method blocks on I/O.
type UART struct {
	mu    sync.Mutex
	dll   byte // divisor latch, low byte
	dlm   byte // divisor latch, high byte
	ier   byte
	iir   byte // pending interrupt bits (iirTHRE, iirRDA) or iirNone
	lcr   byte
	mcr   byte
	scr   byte
	rx    [FIFOSize]byte // receive FIFO ring
	rxHd  int            // index of the oldest byte in rx
	rxLen int            // bytes in rx
	raise func()

	space chan struct{} // capacity 1; signalled when RX FIFO space frees up
	tx    *txQueue
}

// New returns a UART in its reset state that sends every byte the guest
// transmits to out (nil discards). It starts the goroutine that writes to
// out; call [UART.Close] to flush and stop it.
func New(out io.Writer) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{
		dll: resetDLL, dlm: resetDLM, ier: resetIER, iir: resetIIR,
		lcr: resetLCR, mcr: resetMCR,
		space: make(chan struct{}, 1),
		tx:    newTXQueue(out),
	}
}

// SetInterruptLine sets the function called when an enabled interrupt
// becomes pending (an edge on IRQ 4). raise is called without the UART's
// lock held, from whichever goroutine caused the interrupt (a vCPU in Write
// or Read, a feeder in Enqueue); it must not block for long. nil disables
// interrupts towards the host.
func (u *UART) SetInterruptLine(raise func()) {
	u.mu.Lock()
	u.raise = raise
	u.mu.Unlock()
}

// Read implements bus.Device: it handles an IN from base+offset. Accesses
// wider than one byte, or beyond offset 7, read as zeros.
func (u *UART) Read(offset uint64, data []byte) {
	if len(data) != 1 {
		clear(data)
		return
	}
	u.mu.Lock()
	data[0] = u.readReg(offset)
	u.mu.Unlock()
}

// Write implements bus.Device: it handles an OUT to base+offset. Accesses
// wider than one byte, or beyond offset 7, are ignored.
func (u *UART) Write(offset uint64, data []byte) {
	if len(data) != 1 {
		return
	}
	u.mu.Lock()
	fire := u.writeReg(offset, data[0])
	raise := u.raise
	u.mu.Unlock()
	if fire && raise != nil {
		raise()
	}
}

// Enqueue appends host input for the guest to the receive FIFO and returns
// how many bytes fit (at most [FIFOSize] minus what is already queued). It
// sets LSR.DR and, if IER enables it, raises the received-data interrupt.
// In loopback mode the receiver is disconnected and Enqueue accepts nothing.
func (u *UART) Enqueue(in []byte) int {
	u.mu.Lock()
	n := 0
	if u.mcr&mcrLoop == 0 {
		n = min(FIFOSize-u.rxLen, len(in))
		for _, b := range in[:n] {
			u.pushRX(b)
		}
	}
	fire := n > 0 && u.setPending(iirRDA, ierRDI)
	raise := u.raise
	u.mu.Unlock()
	if fire && raise != nil {
		raise()
	}
	return n
}

// readReg returns the value of the register at offset. Called with u.mu held.
func (u *UART) readReg(offset uint64) byte {
	dlab := u.lcr&lcrDLAB != 0
	switch {
	case offset == offData && dlab:
		return u.dll
	case offset == offIER && dlab:
		return u.dlm
	case offset == offData:
		u.clearPending(iirRDA)
		return u.popRX()
	case offset == offIER:
		return u.ier
	case offset == offIIR:
		v := u.iirID() | iirFIFOBits
		u.iir = iirNone
		return v
	case offset == offLCR:
		return u.lcr
	case offset == offMCR:
		return u.mcr
	case offset == offLSR:
		return u.lsr()
	case offset == offMSR:
		return u.msr()
	case offset == offSCR:
		return u.scr
	}
	return 0
}

// writeReg stores v in the register at offset and reports whether an
// interrupt edge must be raised. Called with u.mu held.
func (u *UART) writeReg(offset uint64, v byte) bool {
	dlab := u.lcr&lcrDLAB != 0
	switch {
	case offset == offData && dlab:
		u.dll = v
	case offset == offIER && dlab:
		u.dlm = v
	case offset == offData && u.mcr&mcrLoop != 0:
		// Loopback: the transmitter feeds the receiver; a full FIFO
		// drops the byte, as in vm-superio.
		if u.rxLen == FIFOSize {
			return false
		}
		u.pushRX(v)
		return u.setPending(iirRDA, ierRDI)
	case offset == offData:
		u.tx.put(v)
		// The byte has left THR at once, so THR is empty again.
		return u.setPending(iirTHRE, ierTHRI)
	case offset == offIER:
		u.ier = v & ierValidBits
	case offset == offIIR: // FCR
		if v&fcrClearRX != 0 {
			u.rxHd, u.rxLen = 0, 0
			u.clearPending(iirRDA)
			u.signalSpace()
		}
	case offset == offLCR:
		u.lcr = v
	case offset == offMCR:
		u.mcr = v
	case offset == offSCR:
		u.scr = v
	}
	return false
}

// lsr returns the line status: THR and transmitter always empty, DR when
// the receive FIFO holds data.
func (u *UART) lsr() byte {
	if u.rxLen > 0 {
		return resetLSR | lsrDR
	}
	return resetLSR
}

// msr returns the modem status: DCD, DSR and CTS asserted, or in loopback
// mode the MCR outputs wired back (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD).
func (u *UART) msr() byte {
	if u.mcr&mcrLoop == 0 {
		return resetMSR
	}
	var v byte
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// iirID returns the identification of the highest-priority pending
// interrupt: received data before THR empty. (vm-superio ORs the two,
// which reads as "receiver line status" when both are pending.)
func (u *UART) iirID() byte {
	switch {
	case u.iir&iirRDA != 0:
		return iirRDA
	case u.iir&iirTHRE != 0:
		return iirTHRE
	}
	return iirNone
}

// setPending marks interrupt bit pending if its enable bit is set in IER and
// it is not already pending, and reports whether that is a new edge.
func (u *UART) setPending(bit, enable byte) bool {
	if u.ier&enable == 0 || u.iir&bit != 0 {
		return false
	}
	u.iir = u.iir&^iirNone | bit
	return true
}

// clearPending clears interrupt bit.
func (u *UART) clearPending(bit byte) {
	u.iir &^= bit
	if u.iir&(iirRDA|iirTHRE) == 0 {
		u.iir = iirNone
	}
}

// pushRX appends b to the receive FIFO, which must not be full.
func (u *UART) pushRX(b byte) {
	u.rx[(u.rxHd+u.rxLen)%FIFOSize] = b
	u.rxLen++
}

// popRX removes and returns the oldest received byte, or 0 if none.
func (u *UART) popRX() byte {
	if u.rxLen == 0 {
		return 0
	}
	b := u.rx[u.rxHd]
	u.rxHd = (u.rxHd + 1) % FIFOSize
	u.rxLen--
	u.signalSpace()
	return b
}

// signalSpace wakes a Feed waiting for room in the receive FIFO.
func (u *UART) signalSpace() {
	select {
	case u.space <- struct{}{}:
	default:
	}
}
