package virtio

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/vmm/state"
)

// Saving and restoring a transport for migration. The transport's state
// is its registers, the failure reason, and each queue's geometry and ring
// positions; everything else a driver sees lives in guest RAM (the rings
// themselves), which migration copies, or in the device (config space),
// which saves its own.

// TransportState is a transport's guest-visible state.
type TransportState struct {
	Status      uint32
	DevFeatSel  uint32
	DrvFeatSel  uint32
	DrvFeatures uint64
	QueueSel    uint32
	IntStatus   uint32
	ConfigGen   uint32
	FailReason  string // set with StatusNeedsReset
	Queues      []QueueState
}

// Limits on decoded transport states.
const (
	maxQueues     = 64
	maxFailReason = 1024
	knownStatus   = StatusAcknowledge | StatusDriver | StatusDriverOK | StatusFeaturesOK | StatusNeedsReset | StatusFailed
)

// Save returns the transport's state. Call it with the vCPUs paused: a
// driver's register write in flight would otherwise race with it (and
// with the vCPUs paused no activation, and no Notify, runs: kick.go).
func (t *Transport) Save() TransportState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TransportState{Status: t.status, DevFeatSel: t.devFeatSel, DrvFeatSel: t.drvFeatSel,
		DrvFeatures: t.drvFeatures, QueueSel: t.queueSel, IntStatus: t.intStatus,
		ConfigGen: t.configGen, FailReason: t.failReason}
	for _, q := range t.queues {
		s.Queues = append(s.Queues, q.State())
	}
	return s
}

// Restore loads s into a transport whose guest has not run yet (a fresh
// transport on the migration target, over guest RAM already copied).
//
// A device the driver had brought up (DRIVER_OK and FEATURES_OK, not
// NEEDS_RESET: live) is activated again with the restored queues and
// features, as the source's was when its status became live, so the
// device finds its queue map; restore the device's own state after this.
// A pending interrupt status raises the interrupt line once, since an
// edge in flight at save time may be missing from the interrupt
// controller's state: restore the irqchip first.
//
// ctx bounds the activation's wait for the device's lock
// (Device.Activate): when it ends first, Restore fails with its error,
// the registers and queues restored but the device not activated, and
// the transport is fit only to be discarded, as after any failed
// restore (a failed LoadState leaves its VM to be discarded); kicks to
// it are dropped. Unlike a driver's DRIVER_OK write, Restore notifies no
// queue after the activation: a buffer the driver made available that
// the source's device had not seen waits for the guest's next kick
// (kick.go says why).
func (t *Transport) Restore(ctx context.Context, s TransportState) error {
	if err := t.check(s); err != nil {
		return fmt.Errorf("restore virtio transport %s: %w", t.name, err)
	}
	t.mu.Lock()
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeatures = s.Status, s.DevFeatSel, s.DrvFeatSel, s.DrvFeatures
	t.queueSel, t.intStatus, t.configGen, t.failReason = s.QueueSel, s.IntStatus, s.ConfigGen, s.FailReason
	for i, q := range t.queues {
		q.restore(s.Queues[i])
	}
	queues := t.queues
	t.kicks.activating = live(s.Status) // as setStatus: no kick reaches the device before Activate returned
	t.mu.Unlock()
	if live(s.Status) { // as setStatus activated the source's device
		if err := t.dev.Activate(ctx, queues, s.DrvFeatures); err != nil {
			return fmt.Errorf("restore virtio transport %s: activate: %w", t.name, err) // kicks stay dropped (kick.go)
		}
		t.mu.Lock()
		t.kicks.activating = false
		t.mu.Unlock()
		// No notifyReady: the device's own state is restored after this (kick.go).
	}
	if s.IntStatus != 0 && t.irq != nil {
		t.irq()
	}
	return nil
}

// check validates s against this transport's device and guest RAM.
func (t *Transport) check(s TransportState) error {
	if len(s.Queues) != len(t.queues) {
		return fmt.Errorf("%d queues saved, the device has %d", len(s.Queues), len(t.queues))
	}
	if s.Status&^knownStatus != 0 {
		return fmt.Errorf("status %#x has unknown bits", s.Status)
	}
	if s.Status&StatusFeaturesOK != 0 && (s.DrvFeatures&^t.offered() != 0 || s.DrvFeatures&FVersion1 == 0) {
		return fmt.Errorf("features %#x were not offered here (%#x)", s.DrvFeatures, t.offered())
	}
	if s.IntStatus&^(InterruptUsed|InterruptConfig) != 0 {
		return fmt.Errorf("interrupt status %#x has unknown bits", s.IntStatus)
	}
	for i, qs := range s.Queues {
		if err := qs.check(t.queues[i].MaxSize, t.mem); err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
	}
	return nil
}

// check validates a saved queue: geometry as at QueueReady, and no more
// chains in flight (taken, not yet used) than the ring holds.
func (s QueueState) check(maxSize uint16, mem Memory) error {
	if s.Size > maxSize {
		return fmt.Errorf("size %d, at most %d", s.Size, maxSize)
	}
	if !s.Ready {
		return nil
	}
	q := Queue{MaxSize: maxSize, Size: s.Size, DescAddr: s.DescAddr, AvailAddr: s.AvailAddr, UsedAddr: s.UsedAddr}
	if err := q.validate(mem); err != nil {
		return err
	}
	if inFlight := s.NextAvail - s.NextUsed; inFlight > s.Size {
		return fmt.Errorf("%d chains in flight on a ring of %d", inFlight, s.Size)
	}
	return nil
}

// restore sets the queue from a checked state.
func (q *Queue) restore(s QueueState) {
	q.Size, q.Ready, q.DescAddr, q.AvailAddr, q.UsedAddr = s.Size, s.Ready, s.DescAddr, s.AvailAddr, s.UsedAddr
	q.nextAvail, q.nextUsed = s.NextAvail, s.NextUsed
}

// MarshalBinary encodes s as the payload of a state.SecVirtioMMIO section:
// Status, DevFeatSel, DrvFeatSel u32, DrvFeatures u64, QueueSel,
// IntStatus, ConfigGen u32, FailReason (u32 length + bytes), queue count
// u32, then per queue: Size u16, Ready u8, DescAddr, AvailAddr, UsedAddr
// u64, NextAvail, NextUsed u16.
func (s TransportState) MarshalBinary() ([]byte, error) {
	if len(s.Queues) > maxQueues || len(s.FailReason) > maxFailReason {
		return nil, fmt.Errorf("encode virtio transport state: %d queues, %d-byte reason", len(s.Queues), len(s.FailReason))
	}
	var w state.Writer
	for _, v := range []uint32{s.Status, s.DevFeatSel, s.DrvFeatSel} {
		w.U32(v)
	}
	w.U64(s.DrvFeatures)
	for _, v := range []uint32{s.QueueSel, s.IntStatus, s.ConfigGen} {
		w.U32(v)
	}
	w.String(s.FailReason)
	w.U32(uint32(len(s.Queues)))
	for _, q := range s.Queues {
		w.U16(q.Size)
		w.Bool(q.Ready)
		w.U64(q.DescAddr)
		w.U64(q.AvailAddr)
		w.U64(q.UsedAddr)
		w.U16(q.NextAvail)
		w.U16(q.NextUsed)
	}
	return w.Bytes(), nil
}

// UnmarshalBinary decodes a payload written by MarshalBinary. Values are
// checked against a device by Transport.Restore.
func (s *TransportState) UnmarshalBinary(b []byte) error {
	r := state.NewReader(b, "virtio-mmio transport state")
	var st TransportState
	st.Status, st.DevFeatSel, st.DrvFeatSel = r.U32(), r.U32(), r.U32()
	st.DrvFeatures = r.U64()
	st.QueueSel, st.IntStatus, st.ConfigGen = r.U32(), r.U32(), r.U32()
	st.FailReason = r.String(maxFailReason, "failure reason")
	n := r.Count(maxQueues, "queues")
	for i := 0; i < n && r.Err() == nil; i++ {
		q := QueueState{Size: r.U16(), Ready: r.Bool(), DescAddr: r.U64(), AvailAddr: r.U64(), UsedAddr: r.U64()}
		q.NextAvail, q.NextUsed = r.U16(), r.U16()
		st.Queues = append(st.Queues, q)
	}
	if err := r.Close(); err != nil {
		return err
	}
	*s = st
	return nil
}
