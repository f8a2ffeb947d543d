package virtio

import "sync"

// Kicks, activation and reset. A driver's kick (a QueueNotify write)
// does not take the transport's lock of register writes (ctl), so one
// vCPU's kick can land while another vCPU's Status write activates or
// resets the device. The transport orders them so that a device sees
// Notify only between an Activate that returned nil and the next Reset,
// and never misses a buffer the driver made available before or while
// it was activated:
//
//	vCPU A: Status=DRIVER_OK ─ live, activating ─ Activate ──────── returns ─ Notify(every ready queue) ─ write returns
//	vCPU B:                       QueueNotify(q) ─ dropped, returns at once     (A's Notify(q) finds B's buffer)
//
//	vCPU A: Status=0 ─ status 0 (kicks dropped) ─ wait until no Notify runs ─ Reset ─ queues reset
//	vCPU B:  QueueNotify(q) ─ Notify(q) runs ─────────────────────┘
//
// A kick goes through only while the status is live (DRIVER_OK and
// FEATURES_OK, not NEEDS_RESET), no activation runs, and its queue is
// ready; any other kick is dropped. The spec forbids a driver to notify
// before DRIVER_OK, but Linux's virtio_balloon does: init_vqs puts a
// buffer on the stats queue and kicks it before its probe sets
// DRIVER_OK, and kicks that queue again only after the device used the
// buffer (QEMU's virtio-mmio passes a kick on whatever the status). So
// the Status write that activated the device, once Activate returned
// nil, calls Notify once for every queue the driver set up (notifyReady),
// kicked or not: a device takes a Notify of an empty ring as nothing to
// do. That Notify also stands for every kick dropped while Activate ran:
// it comes after them, so it finds their buffers.
//
// The status becomes live under mu together with activating, so no kick
// reaches the device before its Activate returned; activating ends under
// mu with NEEDS_RESET when Activate failed, and then notifyReady's kicks
// are dropped like any other. The kicking vCPU never waits for Activate;
// the activating vCPU runs notifyReady under ctl, so other register
// writes wait for it as for the Activate.
//
// A reset sets status 0 first (later kicks are dropped), then waits for
// the Notify calls already let through to return before it calls the
// device's Reset: no Notify of a device's previous life runs into its
// Reset or the next Activate. The wait has no bound of its own: a Notify
// in a post-copy fault holds the reset as long as the fault lasts, as the
// device's Reset would wait that long for the device's lock anyway.
// A device's own Fail (NEEDS_RESET) drops later kicks but does not wait
// for Notify calls in progress (the device stops using its queues itself,
// Signaller.Fail).
//
// State saves: nothing of the gate is in TransportState. A save runs
// with every vCPU parked, and a parked vCPU has finished its MMIO exit
// (vmm/vcpu's doc), so no activation and no Notify runs. Restore
// activates a live device the same way (activating set with the restored
// status) but notifies no queue: the device's own state is restored after
// the transport (vmm's restoreDevices), and a buffer a Notify took
// before that would be overwritten by it (the balloon's held stats
// buffer, lost to the driver for good); a Notify there would also wait
// for the device's lock, and touch guest RAM, outside the load's
// context. Not handled therefore: a buffer the driver made available
// before the save that the source's device had not seen is seen only at
// the guest's next kick of its queue; from a source that dropped the
// kicks made before DRIVER_OK (Ferry before notifyReady), a Linux
// guest's primed stats buffer is never seen, and the migrated balloon
// gives no statistics until its driver resets it. A Restore whose
// Activate failed leaves the gate activating, so kicks to that
// transport, which is only fit to be discarded, are dropped.

// kickGate is the transport's state of kicks; its fields are guarded by
// the transport's mu.
type kickGate struct {
	activating bool       // a live status's Activate has not returned yet
	notifying  int        // Notify calls let through and not yet returned
	idle       *sync.Cond // on mu: notifying fell to 0
}

func (g *kickGate) init(mu *sync.Mutex) {
	g.idle = sync.NewCond(mu)
}

// waitIdleLocked waits, mu held (released while it waits), until no
// Notify call is in progress.
func (g *kickGate) waitIdleLocked() {
	for g.notifying > 0 {
		g.idle.Wait()
	}
}

// kick handles the driver's notification of queue q: it calls the
// device's Notify or drops the kick (see above). It allocates nothing.
func (t *Transport) kick(q uint32) {
	t.mu.Lock()
	if !live(t.status) || t.kicks.activating || int(q) >= len(t.queues) || !t.queues[q].Ready {
		t.mu.Unlock()
		return
	}
	t.kicks.notifying++
	t.mu.Unlock()

	t.dev.Notify(int(q))

	t.mu.Lock()
	t.kicks.notifying--
	if t.kicks.notifying == 0 {
		t.kicks.idle.Broadcast()
	}
	t.mu.Unlock()
}

// notifyReady kicks every queue once, after an activation by a driver's
// Status write: each kick is checked as a driver's, so the queues the
// driver did not set up, and all of them when the device failed or was
// reset meanwhile, are skipped. It allocates nothing.
func (t *Transport) notifyReady() {
	for q := range t.queues { // fixed at NewTransport
		t.kick(uint32(q))
	}
}
