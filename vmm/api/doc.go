// Package api holds the arguments and answers of the reference VMM's
// migration commands on its control socket (vmm/control's JSON lines),
// so a client such as cmd/migrate speaks to a ferry-vmm without linking
// the VMM and its KVM code. It imports only framework types.
//
//	migrate ──control socket──► ferry-vmm
//	  migrate-send, migrate-incoming  MigrateArgs (HintArgs) ─► Migration
//	  migrate-status                                         ─► Migration
//	  migrate-cancel                  [IDArgs]               ─► CancelResult (the engine's answer)
//	  migrate-resolve                 ResolveArgs            ─► ResolveResult
//	  migrate-start-postcopy          [IDArgs]               ─► StartPostcopyResult
//	  quit                            [IDArgs]               ─► the VM's status
//
// IDArgs.ID and ResolveArgs.ID name the migration (MigrateArgs.ID) the
// caller acts on: a VMM that holds another one, or none, refuses.
// Migration.Control and ResolveResult.Control carry the answering VMM's
// ControlVersion, from which a client learns that the VMM honours those
// ids (a VMM from before reports none, and ignores the id in
// migrate-cancel and quit). From version 2 (TagsReported) the same
// answers carry the migration's tag fingerprint, which both sides of
// one migration share also without an id; from version 3
// (TagsHonoured) IDArgs.TagFingerprint and ResolveArgs.TagFingerprint
// name a migration by it, honoured as the id is.
//
// What the VMM does with them (ownership of the VM, outcomes, the
// handover) is documented in package vmm; the values of State are vmm's
// VM states.
package api
