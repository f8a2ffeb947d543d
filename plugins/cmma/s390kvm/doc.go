// Package s390kvm is the VMM side of CMMA hints: the KVM ioctls an s390
// VMM issues to read and restore its guest's CMMA values, and a CMMABits
// method with hint.Host's signature for the VMM's host capabilities.
//
//	hint provider (plugins/cmma) ──Host.CMMABits──► VMM ── VM.CMMABits ──► KVM_S390_GET_CMMA_BITS
//	                                                      (KVM_S390_CMMA_PEEK)      on the VM fd
//	VMM migration: StartMigration (KVM_S390_VM_MIGRATION START, after dirty
//	logging is on for every memslot) → Dirty (the migration-mode walk) →
//	destination Set (KVM_S390_SET_CMMA_BITS) → StopMigration
//
// CMMABits peeks: it has no side effects. The migration-mode walk (Dirty)
// clears each value's dirty bit as it returns it; those values belong to
// the VMM, which must send them to the destination with the VM state, so
// a hint provider must not consume them.
//
// It belongs with the reference VMM's KVM code (vmm/kvm) once that VMM
// runs on s390; it sits beside the provider until then. Only linux/s390x
// builds issue the ioctls; elsewhere every call returns an error wrapping
// hint.ErrNotSupported. No s390 host was available: this code compiles
// and vets for GOARCH=s390x, its encoding is tested on x86, and it has
// never run against KVM (see plugins/cmma/README.md).
package s390kvm
