package uart

// Register offsets from the base port.
const (
	offData = 0 // RBR (read) / THR (write), or DLL when LCR.DLAB is set
	offIER  = 1 // interrupt enable, or DLM when LCR.DLAB is set
	offIIR  = 2 // interrupt identification (read) / FIFO control (write)
	offLCR  = 3 // line control
	offMCR  = 4 // modem control
	offLSR  = 5 // line status
	offMSR  = 6 // modem status
	offSCR  = 7 // scratch

	// NumPorts is the number of I/O ports the UART occupies.
	NumPorts = 8
	// COM1Base is the conventional base port of the first UART.
	COM1Base = 0x3f8
	// COM1IRQ is the ISA interrupt line (and GSI) of COM1.
	COM1IRQ = 4
	// FIFOSize is the depth of the receive FIFO.
	FIFOSize = 64
)

// Register bits.
const (
	ierRDI       = 0x01 // received data available interrupt enable
	ierTHRI      = 0x02 // THR empty interrupt enable
	ierValidBits = 0x0f // bits a 16550A implements

	iirNone     = 0x01 // no interrupt pending
	iirTHRE     = 0x02 // THR empty
	iirRDA      = 0x04 // received data available
	iirFIFOBits = 0xc0 // "FIFOs enabled": Linux then detects a 16550A

	fcrClearRX = 0x02 // FCR: clear the receive FIFO

	lcrDLAB = 0x80 // divisor latch access

	lsrDR   = 0x01 // data ready
	lsrTHRE = 0x20 // THR empty
	lsrTEMT = 0x40 // transmitter empty

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80
)

// Reset values (vm-superio's defaults).
const (
	resetIER = 0x00
	resetIIR = iirNone
	resetLCR = 0x03 // 8 data bits, 1 stop bit, no parity
	resetMCR = mcrOUT2
	resetLSR = lsrTHRE | lsrTEMT
	resetMSR = msrDCD | msrDSR | msrCTS
	resetDLL = 0x0c // divisor 12: 9600 baud
	resetDLM = 0x00
)
