// Package cmma is the s390 CMMA hint provider: it reports the guest frames
// whose CMMA usage state is "unused" (hint.MeaningUnused). An s390 guest
// tells the host with the ESSA instruction which of its pages it does not
// need (Linux: every page it frees) — the hardware's own free page hint.
//
//	engine ── Hints(gen) ──► provider ── Host.CMMABits(gfn, ≤256 Ki) ──► VMM ── KVM_S390_GET_CMMA_BITS
//	       ◄── page ranges ──    │ one byte per frame: value & 0x03 == 1 (unused)
//	                             └ Layout.Decode: frames → framework page indices, coalesced
//
// The provider issues no ioctl; the VMM does (s390kvm has the calls for an
// s390 VMM). values.go is the encoding, with its sources; it is pure Go
// and tested on any architecture with synthetic values.
//
// Soundness. Only the unused state is skipped: the guest promised not to
// use the frame's contents before making it stable again, and Linux
// treats a page it allocates as holding garbage. Volatile frames are not
// skipped (the guest expects a discard fault there, not zeros), nor are
// potentially volatile ones (their contents matter if changed). The engine
// asks after its dirty sync, so a frame that turns stable and is written
// after the request travels anyway. The CMMA values themselves are VM
// state the VMM must migrate (KVM_S390_SET_CMMA_BITS on the destination);
// reading them through KVM_S390_CMMA_PEEK, as s390kvm.VM.CMMABits does,
// leaves the migration-mode dirty bits to the VMM for that.
//
// Answers from the host are taken as they come: values may start after
// the frame asked for (the migration-mode walk skips clean frames) or be
// fewer than asked; none, or values before the frame asked for (the walk
// wrapped around), end the region; values past the region are cut off.
//
// Without CMMA (every x86 VMM: its CMMABits returns an error wrapping
// hint.ErrNotSupported) Configure succeeds, the first Hints logs
// NotSupported once and returns an error wrapping hint.ErrNotSupported
// with no ranges; the engine marks the provider not-supported and migrates
// without it. Later calls do not ask the host again.
//
// The package is a plain Go package; cmd/ferry-hint-cmma serves it over
// go-plugin.
package cmma
