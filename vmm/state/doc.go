// Package state is the byte format of a saved VM: the opaque blob that
// framework.Source.SaveState returns and framework.Target.LoadState takes.
// It knows the container — header, typed sections, checksum — and offers
// the bounds-checked little-endian Writer and Reader that each component
// (vCPU, irqchip, devices) uses for its own section payload, next to that
// component's code.
//
// Layout (all integers little-endian):
//
//	offset 0                                   16
//	┌─────────────────┬─────────┬───────┬───────┐
//	│ magic "FERRYVMS"│ version │ flags │ count │   header
//	│      8 bytes    │   u16   │  u16  │  u32  │   version 1, flags 0
//	├─────────────────┴─────────┴───────┴───────┤
//	│ section 1: type u16 │ flags u16 │ id u32 │ length u32 │ payload … │
//	│ section 2: …                                                     │
//	│ …          count sections, back to back, no padding              │
//	├───────────────────────────────────────────┤
//	│ CRC-32C (Castagnoli) u32 of every byte above                      │
//	└───────────────────────────────────────────┘
//
// A section's type says what its payload is (SectionType; 0 is invalid);
// id tells instances apart (the vCPU index, the virtio-mmio window). The
// payload formats are fixed by the container version: a change to any of
// them bumps Version. A reader reads the current and the previous version
// (MinVersion; the rule is in docs/ARCHITECTURE.md#versions) and refuses
// any other, saying which one it got and which it reads, rather than guess.
//
// Sections of version 1, in the order vmm.VM.SaveState writes them:
//
//	type             id          payload                           owner
//	1 machine        0           RAM size, vCPUs, balloon, regions vmm (machine.go)
//	2 vcpu           index       vcpu.State                        vmm/vcpu (state_codec.go)
//	4 pit            0           struct kvm_pit_state2             vmm (savestate.go)
//	3 clock          0           struct kvm_clock_data
//	5 irqchip        0, 1, 2     struct kvm_irqchip: PIC master, PIC slave, IOAPIC
//	6 uart           0 (COM1)    uart.State (its own magic + CRC)  vmm/devices/uart
//	7 virtio-mmio    window      virtio.TransportState             vmm/virtio (state.go)
//	8 balloon        window      balloon.State                     vmm/devices/balloon
//
// LoadState restores them in this order (vmm.VM.LoadState and
// vcpu.RestoreState give the reasons): vCPUs (each on
// its own thread: TSC rate, CPUID, MP state, regs, sregs, XSAVE, XCRs,
// debug regs, LAPIC, MSRs with the TSC deadline last, events), then PIT,
// clock and irqchips, then the devices, the transport before the balloon.
//
// Decode checks, in order: the minimum length, the magic, the version,
// the total size bound (MaxSize), the CRC, then every section header
// against the bytes that remain (and MaxSections), the type, and that
// nothing trails the last section. Payloads are decoded by their owners
// with a Reader, which fails on any read past the end and on leftover
// bytes, so no length from the blob is ever trusted.
package state
