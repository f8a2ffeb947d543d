// Package vcpu runs virtual CPUs: one goroutine locked to its own OS thread
// per vCPU (KVM requires vCPU ioctls from the creating thread), a run loop
// that routes port I/O and MMIO exits to buses, and a Gate that pauses,
// resumes and stops all vCPUs together.
//
//	  Gate.Pause ──► kick: immediate_exit=1 + SIGURG to the vCPU thread
//	      │                     │
//	      ▼                     ▼
//	wait until all parked   KVM_RUN returns EINTR (after completing any
//	                        pending I/O) ──► checkpoint: park until resumed
//	                                              │
//	  VCPU.Do(fn) ──► queue ──────────────────────┴─► fn(kvm.VCPU) on the
//	                                                  vCPU's own thread
//
// A parked vCPU never has an I/O half done. KVM finishes an IN or an MMIO
// read (writing the register, advancing RIP) only at the next KVM_RUN,
// before it looks at immediate_exit. A vCPU that was handling an I/O exit
// in user space when the pause came therefore enters KVM_RUN once more with
// immediate_exit set, which completes the access and returns EINTR without
// running guest code; only then does it park. Functions passed to Do (state
// save and restore) thus see a whole, quiet vCPU.
//
// Races the gate settles (gate_test.go): a Resume that overtakes a
// waiting Pause makes it return ErrResumed (it used to wait for a park
// that never came); a vCPU that starts while paused parks before it
// enters the guest; one that returns while a Pause waits counts as
// parked; a Pause whose context ends leaves the pause requested, so its
// caller resumes if it wants the vCPUs running. The gate does not order
// its callers: vmm serialises pause and resume above it (vmm/runlock.go).
package vcpu
