package virtio

import "sync"

// Kicks, activation and reset. A driver's kick (a QueueNotify write)
// does not take the transport's lock of register writes (ctl), so one
// vCPU's kick can land while another vCPU's Status write activates or
// resets the device. The transport orders them so that a device sees
// Notify only between an Activate that returned nil and the next Reset,
// and never loses a kick made while it was live:
//
//	vCPU A: Status=DRIVER_OK ─ live, activating ─ Activate ──────── returns ─ take held ─ Notify(q) ─ write returns
//	vCPU B:                       QueueNotify(q) ─ held[q] ─ returns at once               (A delivers B's kick)
//
//	vCPU A: Status=0 ─ status 0 (kicks dropped) ─ wait until no Notify runs ─ Reset ─ queues reset
//	vCPU B:  QueueNotify(q) ─ Notify(q) runs ─────────────────────┘
//
// A kick goes through only while the status is live (DRIVER_OK and
// FEATURES_OK, not NEEDS_RESET) and its queue is ready; any other kick
// is dropped (the spec forbids a driver to notify before DRIVER_OK,
// which it sets after FEATURES_OK). Not handled: Linux's virtio_balloon
// breaks that rule, priming its stats queue and kicking it in init_vqs
// before its probe sets DRIVER_OK; that kick is dropped, and Linux kicks
// the stats queue again only after the device used that buffer.
//
// The status becomes live under mu together with activating, so no kick
// reaches the device before its Activate returned; kicks that arrive
// meanwhile are held, one bit per queue (two kicks of a queue make one
// Notify: a kick only says "look at the ring"), and the activating write
// delivers them when Activate returned, or drops them when it failed
// (NEEDS_RESET, set under mu as activating ends). The kicking vCPU never
// waits for Activate; the activating vCPU runs the held kicks' Notify,
// under ctl, so other register writes wait for them as for the Activate.
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
// State saves: held kicks are not in TransportState because none exist
// at a save. A save runs with every vCPU parked, and a parked vCPU has
// finished its MMIO exit (vmm/vcpu's doc): the kicking vCPU's write had
// returned, and so had the activating vCPU's, which delivers the held
// kicks before it returns. Restore activates a live device the same way
// (activating set with the restored status) and delivers what it held,
// which is nothing while its caller keeps its rule that the guest has
// not run; a Restore whose Activate failed leaves the gate activating,
// so kicks to that transport, which is only fit to be discarded, are
// held and never delivered.

// kickGate is the transport's state of kicks; its fields are guarded by
// the transport's mu.
type kickGate struct {
	activating bool       // a live status's Activate has not returned yet
	held       []bool     // by queue: kicked while activating
	notifying  int        // Notify calls let through and not yet returned
	idle       *sync.Cond // on mu: notifying fell to 0
}

func (g *kickGate) init(mu *sync.Mutex, queues int) {
	g.held = make([]bool, queues)
	g.idle = sync.NewCond(mu)
}

// endActivationLocked ends an activation and returns the queues kicked
// meanwhile, for deliver.
func (g *kickGate) endActivationLocked() []uint32 {
	g.activating = false
	var held []uint32
	for q, kicked := range g.held {
		if kicked {
			held = append(held, uint32(q))
			g.held[q] = false
		}
	}
	return held
}

// waitIdleLocked waits, mu held (released while it waits), until no
// Notify call is in progress.
func (g *kickGate) waitIdleLocked() {
	for g.notifying > 0 {
		g.idle.Wait()
	}
}

// kick handles the driver's notification of queue q: it calls the
// device's Notify, holds the kick while the device's Activate runs, or
// drops it (see above). It allocates nothing.
func (t *Transport) kick(q uint32) {
	t.mu.Lock()
	if !live(t.status) || int(q) >= len(t.queues) || !t.queues[q].Ready {
		t.mu.Unlock()
		return
	}
	if t.kicks.activating {
		t.kicks.held[q] = true
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

// deliver passes the kicks held during an activation on, each checked
// again: those of a device that failed or was reset meanwhile are
// dropped.
func (t *Transport) deliver(held []uint32) {
	for _, q := range held {
		t.kick(q)
	}
}
