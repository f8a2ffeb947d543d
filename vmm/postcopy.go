package vmm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// The manual switch to post-copy (migrate-start-postcopy, like QEMU's
// migrate-start-postcopy): every migrate-send gets a channel that the
// engine watches (engine.Options.StartPostcopy); the command closes it.
//
//	migrate-send ── mg.switchable() ──► chan ──► engine.Options.StartPostcopy
//	migrate-start-postcopy ── close(chan), once ──┘  (a second call: no-op)

// switchable makes the channel that switches the migration being started
// to post-copy when closed; the caller hands it to the engine.
func (mg *migration) switchable() <-chan struct{} {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.toPostcopy, mg.askedPostcopy = make(chan struct{}), false
	return mg.toPostcopy
}

// handleStartPostcopy is the control command migrate-start-postcopy: an
// optional api.IDArgs, answers api.StartPostcopyResult.
func (mg *migration) handleStartPostcopy(_ context.Context, raw json.RawMessage) (any, error) {
	n, err := decodeID(raw)
	if err != nil {
		return nil, err
	}
	return mg.startPostcopy(n)
}

// startPostcopy is migrate-start-postcopy's work: it asks the running outgoing
// migration to switch to post-copy. A second call changes nothing and
// says so; without a running outgoing migration it is an error, and so
// it is, changing nothing, when given the id or the tag fingerprint of
// another migration than the one mg holds (none: any; checkIDLocked).
func (mg *migration) startPostcopy(n api.IDArgs) (api.StartPostcopyResult, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if err := mg.checkIDLocked("migrate-start-postcopy", n); err != nil {
		return api.StartPostcopyResult{}, err
	}
	switch {
	case mg.cur == nil:
		return api.StartPostcopyResult{}, errors.New("no migration is running on this VM: start one with migrate-send (migrate -config JOB) first")
	case mg.cur.Done:
		st := "done"
		if mg.cur.Report != nil {
			st = mg.cur.Report.Status.String()
		}
		return api.StartPostcopyResult{}, fmt.Errorf("no migration is running on this VM: the last one already ended (%s)", st)
	case mg.cur.Role != transport.RoleSend.String():
		return api.StartPostcopyResult{}, errors.New("this VMM receives the migration: run migrate-start-postcopy on the source VMM")
	case mg.toPostcopy == nil:
		return api.StartPostcopyResult{}, errors.New("the migration is still starting: try again in a moment")
	}
	res := api.StartPostcopyResult{Phase: mg.cur.Progress.Phase}
	if mg.askedPostcopy {
		res.Message = "post-copy was already requested; nothing changed"
		return res, nil
	}
	close(mg.toPostcopy) // harmless once the switch happened: the engine no longer watches it
	mg.askedPostcopy = true
	res.Requested = res.Phase != engine.PhasePostcopy
	switch res.Phase {
	case engine.PhasePostcopy:
		res.Message = "the migration already switched to post-copy; nothing changed"
	case engine.PhaseStop, engine.PhaseState:
		res.Message = fmt.Sprintf("requested, but the switch-over had already begun (phase %s): it ends as that switch-over decides", res.Phase)
	default:
		res.Message = "requested: the source switches to post-copy at its next batch of pages"
	}
	return res, nil
}

// haltTimeout bounds Halt's wait for the vCPU loops to return.
const haltTimeout = 5 * time.Second

// errPostcopyHalted is how a VM halted by post-copy ends (Run's error).
var errPostcopyHalted = errors.New("post-copy broke: the VM was halted for good and never runs again")

// halt is framework.PostcopyTarget's Halt: post-copy broke for good and
// the engine is about to close the userfaultfd, after which a page that
// never came would read as zeros. Device code gets errHalted from guest
// RAM from now on; the VM ends (stopped, so Run returns and the VMM
// exits with errPostcopyHalted) and its vCPUs are kicked out of KVM_RUN.
// It returns once every vCPU loop returned, or fails after haltTimeout
// (v.haltBound in tests): the engine then keeps the userfaultfd open,
// and the VMM stays, its guest frozen, until Stop (halt_failed.go).
//
// A vCPU waiting on a missing page inside KVM_RUN leaves it on the kick's
// signal on kernels whose KVM faults are interruptible (KVM returns EINTR
// for a pending signal while it waits on a fault); not tested here: this
// machine has no /dev/kvm.
func (v *VM) halt() error {
	v.ram.halt()
	v.finish(1, errPostcopyHalted)
	v.mu.Lock()
	started := v.cpus != nil
	v.mu.Unlock()
	if !started {
		return nil
	}
	bound := cmp.Or(v.haltBound, haltTimeout)
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-v.cpusDone:
		return nil
	case <-timer.C:
	}
	select {
	case <-v.cpusDone: // as the bound passed
		return nil
	default:
	}
	v.haltFailedNow(bound)
	v.log.Error("post-copy broke and the VM could not be halted: a vCPU is still inside KVM_RUN or a device, waiting "+
		"for a page this destination lacks; it never runs the guest again, and this VMM stays, its guest frozen, "+
		"answering status and migrate-status; quit (or a signal) ends its process, which ends the guest", "waited", bound)
	return fmt.Errorf("halt: vCPUs still inside KVM_RUN %v after they were told to stop", bound)
}
