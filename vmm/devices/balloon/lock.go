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
// post-copy broke. So every host call takes a context and waits for the
// lock, and for the changes it waits on, under it; a
// control command, a hint provider's call or a state save or load that
// makes one returns at its deadline:
//
//	vCPU thread:  Notify ── lock ── guest RAM (post-copy: may wait for a page) ── changed ── unlock
//	host:         SetTargetContext, TargetContext, RequestStatsContext, LastStatsContext,
//	              StartHintContext, StopHintContext, DoneHintContext, HintStatusContext,
//	              SetHintSinkContext, SaveContext, RestoreContext, Activate from a restore (ctx)
//	                 ── lockContext(ctx) ──► its work, or an error when ctx ends first (nothing changed)
//	host:         WaitActual, AwaitStats, WaitHint (ctx) ── await: lockContext, look, take changed
//	                                                        (made by the first waiter), unlock,
//	                                                        wait for changed or ctx, look again
//
// No host call has a form without a context, so none can be picked
// that hangs behind a vCPU in a fault. Activate waits under the context
// its transport hands it: a restore's (virtio.Transport.Restore, from
// a state load), bounded; a driver's Status write's, from a vCPU, not.
// What is not bounded: the vCPU's handlers themselves (they must not
// allocate: TestVCPUPathsAllocFree).

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
