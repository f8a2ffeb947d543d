package vcpu

import (
	"context"
	"errors"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// request is a function queued for a parked vCPU's thread.
type request struct {
	fn   func(*kvm.VCPU) error
	done chan error // capacity 1
}

var (
	errVCPUExited = errors.New("vCPU run loop has returned")
	errNotPaused  = errors.New("vCPU is not paused: pause the VM first")
)

// Do runs fn with the vCPU's KVM handle on the vCPU's own thread, where
// KVM requires vCPU ioctls to be issued, and returns fn's error. The gate
// must be paused (Gate.Pause, or paused before Start so the vCPU never
// entered the guest): fn runs while the vCPU is parked at its checkpoint,
// after any I/O left by its last exit was completed, so it sees and may
// replace a whole, quiet vCPU state.
//
// Calls for the same vCPU run in order, one at a time. If ctx ends before
// fn started, fn never runs; once started, Do waits for it (fn should be a
// handful of ioctls). Do fails if the gate is resumed or stopped first or
// the run loop has returned.
func (c *VCPU) Do(ctx context.Context, fn func(*kvm.VCPU) error) error {
	g := c.gate
	r := request{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	switch {
	case c.exited || g.stopped:
		g.mu.Unlock()
		return errVCPUExited
	case !g.paused:
		g.mu.Unlock()
		return errNotPaused
	}
	c.reqs = append(c.reqs, r)
	g.cond.Broadcast()
	g.mu.Unlock()

	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	g.mu.Lock()
	for i := range c.reqs {
		if c.reqs[i].done == r.done { // not started: withdraw it
			c.reqs = append(c.reqs[:i], c.reqs[i+1:]...)
			g.mu.Unlock()
			return ctx.Err()
		}
	}
	g.mu.Unlock()
	return <-r.done // started (or failed by the loop's end): wait for its answer
}

// ID is the vCPU's index.
func (c *VCPU) ID() int { return c.cfg.ID }
