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
//
// The loop never leaves KVM_RUN with an I/O half done: KVM finishes a
// pending IN or MMIO read at the start of the next KVM_RUN, before it looks
// at immediate_exit, so a parked vCPU's registers are complete.
package vcpu
