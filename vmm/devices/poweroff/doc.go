// Package poweroff is a one-register device that lets a guest end the VM
// with an exit code: an OUT of value v to port 0xf4 calls the VMM's exit
// function with v & 0xff.
//
//	port 0xf4..0xf7   write v (1, 2 or 4 bytes)  →  onExit(int(v & 0xff))
//	                  read                       →  zeros
//
// It sits at the same port as QEMU's isa-debug-exit configured with
// iobase=0xf4, so one test guest can end itself under both VMMs, but the
// exit status differs: QEMU exits with (v << 1) | 1, so a guest's 0 becomes
// status 1, while Ferry reports v & 0xff unchanged. Run QEMU with
// -device isa-debug-exit,iobase=0xf4,iosize=0x04 and map its status back
// with status >> 1.
//
// What it cannot do: reset the VM, power it off through ACPI, or report
// more than 8 bits of status.
package poweroff
