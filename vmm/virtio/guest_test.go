package virtio

import (
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// TestQueuesFixedWhileDriverOK: once the device runs (DRIVER_OK), its
// queues change only at a reset. A driver that writes QueueReady=0, or
// clears DRIVER_OK without a reset (the spec forbids clearing status
// bits) and then rewrites a queue, must not change the ring the device
// is using: the device would use a queue of size 0 or with unchecked
// addresses.
func TestQueuesFixedWhileDriverOK(t *testing.T) {
	d, tr, dev, _ := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	before := tr.Save().Queues[0]

	d.SetReg(regQueueSel, 0)
	d.SetReg(regQueueReady, 0)
	d.SetReg(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK) // DRIVER_OK cleared
	d.SetReg(regQueueReady, 0)
	d.SetReg(regQueueNum, 4)
	d.SetReg(regQueueDescLow, 0xff000)
	if st := d.Reg(regStatus); st&StatusDriverOK == 0 {
		t.Errorf("status %#x: DRIVER_OK cleared without a reset", st)
	}
	if after := tr.Save().Queues[0]; after != before {
		t.Fatalf("the running device's queue changed from %+v to %+v", before, after)
	}
	d.Add(0, virtiotest.Buf{Addr: 0x40000, Len: 8, Write: true})
	d.Kick(0)
	if used := d.Used(0); len(used) != 1 || dev.q == nil {
		t.Fatalf("the queue stopped working: %d used", len(used))
	}
}
