package balloon

import (
	"context"
	"fmt"
)

// The device's lock. vCPU threads hold it while they run the device's
// register handlers (Notify, ReadConfig, WriteConfig, Activate, Reset),
// and on a post-copy destination such a handler may wait, the lock held,
// in a fault on a page the source has yet to send (the VMM's guest RAM
// touches first): as long as post-copy takes to bring it, for good if
// post-copy broke. So the host's calls that take a context wait for the
// lock, and for the changes they wait on, under that context, and a
// control command that makes them returns at its deadline:
//
//	vCPU thread:  Notify ── lock ── guest RAM (post-copy: may wait for a page) ── changed ── unlock
//	host:         TargetContext(ctx) ── lockContext(ctx) ──► Target, or an error when ctx ends first
//	host:         WaitActual, AwaitStats, WaitHint (ctx) ── await: lockContext, look, take changed
//	                                                        (made by the first waiter), unlock,
//	                                                        wait for changed or ctx, look again
//
// The host's calls without a context (SetTarget, RequestStats, StartHint,
// StopHint, DoneHint, Target, HintStatus, Save, Restore) take it as a
// plain mutex, without a bound: their callers must know that no vCPU can
// be waiting in the device (the VMM refuses them while a migration owns
// its destination, and its source never faults).

// lockContext takes the device's lock (a ctxlock.Mutex), or fails,
// saying why it could not, once ctx ended first. A free lock is taken
// even if ctx has ended already.
func (d *Device) lockContext(ctx context.Context) error {
	if err := d.mu.LockContext(ctx); err != nil {
		return fmt.Errorf("the balloon device is busy: a vCPU is in it "+
			"(on a post-copy destination it may wait for a page the source has yet to send): %w", err)
	}
	return nil
}

// changedLocked wakes everybody waiting for a change (await). d.mu is
// held. Without a waiter it costs a nil check: vCPU threads call it on
// every kick and every write of actual (TestVCPUPathsAllocFree).
func (d *Device) changedLocked() {
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// changeLocked returns the channel the next change closes, made by the
// first waiter since the last change. d.mu is held.
func (d *Device) changeLocked() <-chan struct{} {
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.changed
}

// await calls look under the device's lock, taken under ctx, until look
// says done: once at first, then after each change. It fails when ctx
// ends first; look has then seen the device as it was the last time the
// lock was free (a last time when ctx ends, if the lock is free then),
// or never.
func (d *Device) await(ctx context.Context, look func() (done bool)) error {
	for {
		if err := d.lockContext(ctx); err != nil {
			return err
		}
		if look() {
			d.mu.Unlock()
			return nil
		}
		changed := d.changeLocked()
		d.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			if d.mu.TryLock() {
				done := look()
				d.mu.Unlock()
				if done {
					return nil
				}
			}
			return ctx.Err()
		}
	}
}
