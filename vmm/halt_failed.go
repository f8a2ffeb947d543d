package vmm

import (
	"errors"
	"fmt"
	"time"
)

// A post-copy destination whose Halt failed (framework.PostcopyTarget's
// Halt, called by the engine when post-copy broke for good): halt
// stopped the VM, but a vCPU loop had not returned haltTimeout after it
// was told to stop. It is waiting inside KVM_RUN in a fault on a page
// this destination lacks, or in a device's Touch of one, and the engine,
// told so, keeps the userfaultfd open (its fault loop stopped) and the
// Toucher set: that thread waits for good rather than going on with
// zeros, and only the end of the process ends it (engine.ErrNotHalted).
//
//	post-copy broke ─► Halt ─► halt: VM stopped, vCPUs kicked, device code gets errHalted
//	    ├─ every vCPU loop returned ─► Run returns: ferry-vmm exits (errPostcopyHalted)
//	    └─ one did not within haltTimeout ─► haltFailed; the telling of the source is cut
//	         │  (linger.go: only BROKEN on the session and its answer, within seconds)
//	         ▼
//	       the VMM stays, the guest frozen: status says not_halted, migrate-status
//	       postcopy-broken with the engine's error, migrate-resolve postcopy-broken
//	         │
//	       Stop (quit, the shutdown, Close; or one that came before the failure)
//	         ▼
//	       vcpusLeft: Run returns 1, errNotHalted, without waiting for those loops;
//	       Close releases neither KVM nor guest RAM; the process's exit ends
//	       the threads and closes the userfaultfd, which ends the guest
//
// A signal ends the process at once (the VM stopped at the Halt, so
// ServeShutdowns has given the signals their default action back).
//
// Why it stays rather than exit on its own: nothing of the guest runs.
// The gate is stopped, so a vCPU that leaves KVM_RUN never enters it
// again, and device code no longer reaches guest RAM; a vCPU still
// inside waits on a page nothing will place (a signal that ends its wait
// only makes it leave). The engine's "end the process now" is for VMMs
// whose threads may run on; here the guest is frozen. And nobody waits
// for this process to end: the source keeps its paused copy and never
// resumes it on its own (postcopy-broken; or handover-unknown, if it
// heard neither RUNNING nor BROKEN, which only migrate-resolve moves
// on). migrate -resolve asks both sides: a destination that answers
// postcopy-broken makes its verdict certain (the guest is lost; never
// resume the source's older copy), where one that exited leaves such a
// handover-unknown source undecidable from there. A frozen VMM that answers is more useful than
// one that hangs (before, Run and Close waited for the vCPUs for good:
// quit did not end it, an embedder's Close never returned) or one that
// is gone. What it costs: guest RAM and the frozen threads stay until
// quit or a signal. What it cannot do: run anything, save the state
// (its guest lacks pages), or give a vCPU its page.

// errNotHalted is how a VM whose Halt failed ends (Run's error, once
// Stop let it return).
var errNotHalted = errors.New("post-copy broke and the VM could not be halted: vCPUs were left waiting for pages " +
	"this destination lacks (frozen, never run again); this process's exit ends them and the guest")

// haltFailedNow records that halt failed (it waited bound): Run and
// Close no longer wait for the vCPU loops once Stop came, and the VM
// ends with errNotHalted and exit code 1, whatever ended it first (a
// Stop just before has code 0). Called by halt only.
func (v *VM) haltFailedNow(bound time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.haltFailed = true
	v.exitCode, v.exitErr = 1, fmt.Errorf("%w (still inside KVM_RUN or a device %v after they were told to stop)", errNotHalted, bound)
	v.leaveIfStuckLocked()
}

// stopAskedNow records a Stop (quit, the shutdown, Close); after a
// failed Halt it lets Run and Close return.
func (v *VM) stopAskedNow() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stopAsked = true
	v.leaveIfStuckLocked()
}

// leaveIfStuckLocked closes vcpusLeft once Halt failed and Stop came
// (both, in either order); v.mu is held.
func (v *VM) leaveIfStuckLocked() {
	if v.haltFailed && v.stopAsked && !v.vcpusLeftClosed {
		close(v.vcpusLeftLocked())
		v.vcpusLeftClosed = true
	}
}

// vcpusLeftLocked is the channel closed when the VMM leaves the vCPU
// loops a failed Halt left to the process's exit (made by the first
// use: a VM built without it needs none); v.mu is held.
func (v *VM) vcpusLeftLocked() chan struct{} {
	if v.vcpusLeft == nil {
		v.vcpusLeft = make(chan struct{})
	}
	return v.vcpusLeft
}

// awaitEnd blocks until Run may return: every vCPU loop returned; or,
// once Halt failed, Stop came (vcpusLeft), whether or not they return.
// A VM whose Halt failed waits for Stop even if its vCPUs return later:
// it stays until asked, as its log and status say.
func (v *VM) awaitEnd() {
	if returned, left := v.vcpusOrLeft(); returned && v.notHalted() {
		<-left
	}
}

// vcpusReturned waits, after Stop, for the vCPU loops: true once they
// all returned, false once a failed Halt left some (they may never
// return). The wait ends with the Halt's own bound (haltTimeout) when a
// post-copy that breaks leaves one in a fault; before it breaks, that
// vCPU waits for its page as it would in the guest.
func (v *VM) vcpusReturned() bool {
	v.vcpusOrLeft()
	return !v.notHalted()
}

// vcpusOrLeft waits until every vCPU loop returned (returned true) or
// the VMM left them (vcpusLeft closed: returned false), and gives
// vcpusLeft for a further wait.
func (v *VM) vcpusOrLeft() (returned bool, left <-chan struct{}) {
	v.mu.Lock()
	l := v.vcpusLeftLocked()
	v.mu.Unlock()
	select {
	case <-v.cpusDone:
		return true, l
	case <-l:
		return false, l
	}
}

// notHalted reports whether the engine's Halt failed.
func (v *VM) notHalted() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.haltFailed
}
