// Package uart emulates the 8250/16550A UART that a guest finds at COM1
// (I/O ports 0x3f8-0x3ff, ISA IRQ 4) and uses as its serial console.
//
// The register model follows rust-vmm's vm-superio Serial, which Firecracker
// and Cloud Hypervisor ship:
//
//	offset  read                      write
//	0       RBR (DLL if LCR.DLAB)     THR (DLL if LCR.DLAB)
//	1       IER (DLM if LCR.DLAB)     IER (DLM if LCR.DLAB)
//	2       IIR | 0xC0, then reset    FCR (only "clear RX FIFO")
//	3       LCR                       LCR
//	4       MCR                       MCR
//	5       LSR (THRE|TEMT always)    ignored
//	6       MSR (loopback: from MCR)  ignored
//	7       SCR                       SCR
//
//	    guest THR write ──► TX queue (1 MiB) ──► drain goroutine ──► out
//	    Enqueue / Feed ───► RX FIFO (64 B) ───► guest RBR read
//
// Transmission never blocks the vCPU: a THR write appends the byte to a
// bounded in-memory queue that a goroutine owned by the UART writes to out.
// If out stalls for long enough that the queue fills, further bytes are
// dropped and counted (see [UART.Dropped]); the guest still sees THRE and
// gets its THR interrupt, as it would from a real UART with no cable.
// [UART.Close] flushes the queue and stops the goroutine.
//
// Interrupts are edges: the function given to [UART.SetInterruptLine] is
// called, outside the UART's lock, when an enabled interrupt (received data
// available or THR empty) becomes pending. The caller turns that into
// KVM_IRQ_LINE 1/0 on GSI 4 or an eventfd bound with KVM_IRQFD.
//
// [UART.Feed] copies a host reader (stdin) into the receive FIFO, waiting
// while the guest has not drained it. [UART.Save] and [UART.Restore] move
// the guest-visible state between VMMs; [State] encodes to a versioned,
// CRC-checked blob.
//
// What it cannot do: baud rate, parity, stop bits and the divisor are stored
// but have no effect; there is no TX FIFO, no receiver-line-status or
// modem-status interrupts, no FIFO trigger levels, no RX timeout interrupt;
// enabling IER.THRI does not by itself raise an interrupt (vm-superio
// behaviour; Linux notices and enables its UART_BUG_THRE workaround).
package uart
