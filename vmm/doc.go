// Package vmm is Ferry's reference x86-64 KVM virtual machine monitor: it
// assembles guest RAM (vmm/memory), vCPUs (vmm/vcpu), the PVH boot path
// (vmm/arch/x86) and devices (vmm/devices) into a VM that later issues
// migrate through the framework's VMM contract.
//
// A VM is built in three steps: New checks the kernel and the memory size
// before touching /dev/kvm (so bad input fails fast and clearly), then
// creates the KVM VM, RAM slots and devices and loads the kernel; Run starts
// the vCPUs and returns when the guest powers off, fails or is stopped.
//
// Migration: a paused VM's SaveState returns its state as a vmm/state blob
// (vCPUs, in-kernel irqchip, PIT and kvmclock, devices; not RAM). A VM
// built with Config.Incoming has RAM, devices and parked vCPUs but no
// kernel; once its RAM holds the source's, LoadState and Resume run the
// guest on (incoming.go, loadstate.go). The VM's states, the table of
// allowed transitions and the commands each state refuses are in
// lifecycle.go. A migration's handover ends each side in a state
// (handover.go):
//
//	source:       running ─► paused ─► migrated          (RUNNING came: quit it)
//	                           ├──────► running           (failed: resumed)
//	                           ├──────► handover-unknown ─► running | migrated
//	                           └──────► postcopy-broken    (post-copy could not finish: never runs again)
//	destination:  incoming ─► paused ─► running
//	                 │         ├──────► handover-unknown ─► running | discarded (until quit)
//	                 │         ├──────► (post-copy broke: Halt) stopped, the VMM exits
//	                 │         └──────► (post-copy broke, Halt failed) stopped, the guest frozen:
//	                 │                  the VMM stays until quit (halt_failed.go)
//	                 └─────────────────► (failed or cancelled, also while its transport
//	                                     plugin starts) stopped, the VMM exits
//
// A migrate-incoming whose plugins did not start (a wrong path, a
// refused block) and that nobody cancelled leaves the VM incoming, for a
// next one (migrate_commands.go: unopenedDone).
//
// handover-unknown is left only through migrate-resolve; pause and resume
// refuse it, and no timer ends a VM that may hold the only copy of a guest.
// migrate-cancel, migrate-resolve, migrate-start-postcopy and quit take
// the id of the migration their caller means, or its tag fingerprint
// (for a migration without an id), and refuse, changing nothing, on a
// VMM that holds another migration or none (migration_id.go). The VMM
// cannot check who calls: naming neither, they act on whatever it
// holds.
//
// The migration itself runs in framework/session, as in any VMM that
// embeds Ferry: migrate_commands.go turns the control socket's arguments
// (vmm/api) into a session.Spec, opens the session (the transport plugin
// starts, or the command fails) and runs Send or Receive with
// migrationVM (migration.go: the VM as framework.Source and Target) and
// hintHost (hinthost.go: the balloon capability providers call back
// into); the outcome decides the VM's state (handover.go).
//
// Post-copy: migrationVM is also a framework.PostcopyTarget. The engine
// registers GuestMemory (the mapping KVM's slots use) with userfaultfd
// and hands over a Toucher; the devices reach guest RAM only through
// guestRAM (guestram.go), which touches first while one is set, and
// never for ranges they only validate. migrate-start-postcopy closes the
// running migrate-send's StartPostcopy channel (postcopy.go). None of it
// has run on KVM yet: the unit tests use memfd RAM and fake Touchers.
//
// Run state: one lock serialises pause, resume, quit, state-save and
// state-load, and a migration owns the VM from migrate-send or
// migrate-incoming accepted until it has finished; meanwhile those
// commands are refused and only the engine (through migrationVM) changes
// the run state. A source that handed its VM over is StateMigrated and
// never runs again here (runlock.go has the diagram).
//
// Port map: 0x3f8-0x3ff COM1 (8250 UART), 0xf4 power-off (a 32-bit write
// of v ends the VM with exit code v&0xff). Interrupts are not routed yet:
// the test guest polls.
package vmm
