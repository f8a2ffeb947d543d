package virtio

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

// migrate saves tr, copies guest RAM, and restores into a fresh transport
// and device; the returned driver continues where d left off.
func migrate(t *testing.T, d *virtiotest.Driver, tr *Transport) (*virtiotest.Driver, *Transport, *echoDevice, *int) {
	t.Helper()
	b, err := tr.Save().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var s TransportState
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, tr.Save()) {
		t.Fatalf("decoded %+v, saved %+v", s, tr.Save())
	}
	mem := virtiotest.NewMem(len(d.Mem.B))
	copy(mem.B, d.Mem.B)
	dev := &echoDevice{mem: mem}
	irqs := new(int)
	tr2 := NewTransport("echo", dev, mem, func() { *irqs++ }, nil)
	dev.sig = tr2
	if err := tr2.Restore(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	d2 := *d
	d2.Dev, d2.Mem = tr2, mem
	return &d2, tr2, dev, irqs
}

func TestTransportSaveRestore(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	for i := 0; i < 11; i++ { // wrap the ring once, leave the indices mid-ring
		d.Add(0, virtiotest.Buf{Addr: 0x50000, Len: 8, Write: true})
		d.Kick(0)
		d.Used(0)
	}
	d.SetReg(regQueueSel, 0)
	d2, tr2, dev2, irqs := migrate(t, d, tr)
	if dev2.q == nil {
		t.Fatal("restored device was not activated")
	}
	if *irqs != 1 {
		t.Errorf("restore raised %d interrupts, want 1 (used interrupt pending)", *irqs)
	}
	if got, want := tr2.Save(), tr.Save(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state %+v, want %+v", got, want)
	}
	if d2.Reg(regStatus) != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK || d2.Reg(regQueueReady) != 1 {
		t.Fatal("registers not restored")
	}
	for i := 0; i < 10; i++ {
		head := d2.Add(0, virtiotest.Buf{Addr: 0x50000, Len: 8, Write: true})
		d2.Kick(0)
		if used := d2.Used(0); len(used) != 1 || used[0].ID != uint32(head) || used[0].Len != 8 {
			t.Fatalf("after restore, round %d: used %+v", i, used)
		}
	}
}

func TestTransportRestoreBeforeDriverOK(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.SetReg(regStatus, StatusAcknowledge|StatusDriver)
	_, tr2, dev2, _ := migrate(t, d, tr)
	if dev2.q != nil {
		t.Fatal("a device the driver had not brought up was activated")
	}
	if st, _ := tr2.Status(); st != StatusAcknowledge|StatusDriver {
		t.Fatalf("status %#x", st)
	}
}

// TestTransportRestoreActivatesAsSource: a destination's device is
// activated exactly when the source's was, whatever order the driver set
// the status bits in. Before, a driver that set DRIVER_OK before
// FEATURES_OK left the source's device unactivated and had the
// destination's activated (the balloon then refused its restore: the VM
// could not migrate), and one that set them after a failed queue setup
// (NEEDS_RESET) had the source's activated and not the destination's.
func TestTransportRestoreActivatesAsSource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		driver func(d *virtiotest.Driver)
		active bool
	}{
		{"in order", func(d *virtiotest.Driver) { d.Setup(FVersion1, 1, 8, 0x10000) }, true},
		{"DRIVER_OK before FEATURES_OK", func(d *virtiotest.Driver) {
			setupQueue(d, 0x10000)
			d.SetReg(regStatus, StatusAcknowledge|StatusDriver|StatusDriverOK)
			d.SetReg(regStatus, StatusAcknowledge|StatusDriver|StatusDriverOK|StatusFeaturesOK)
		}, true},
		{"after NEEDS_RESET", func(d *virtiotest.Driver) {
			d.SetReg(regQueueSel, 0)
			d.SetReg(regQueueNum, 3) // not a power of two: NEEDS_RESET
			d.SetReg(regQueueReady, 1)
			setupQueue(d, 0x10000) // a good retry
			d.SetReg(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, tr, dev, _ := newTest(t)
			tc.driver(d)
			_, _, dev2, _ := migrate(t, d, tr)
			if src, dst := dev.q != nil, dev2.q != nil; src != dst || src != tc.active {
				t.Fatalf("device activated on the source: %v, on the destination: %v; want %v on both", src, dst, tc.active)
			}
		})
	}
}

// busyDevice is echoDevice whose lock something else holds for good:
// Activate waits for it under ctx, as the balloon's does, and gives up
// when ctx ends.
type busyDevice struct{ echoDevice }

func (b *busyDevice) Activate(ctx context.Context, _ []*Queue, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestTransportRestoreActivationBounded: Restore hands its context to
// the device's Activate, so the restore of a live device that stays
// busy fails with the context's error (a state load then fails rather
// than hangs), not activated.
func TestTransportRestoreActivationBounded(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	mem := virtiotest.NewMem(len(d.Mem.B))
	tr2 := NewTransport("busy", &busyDevice{echoDevice{mem: mem}}, mem, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr2.Restore(ctx, tr.Save()) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "activate") {
			t.Fatalf("Restore of a live device that stays busy: %v; want its context's error, from the activation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restore of a live device that stays busy had not returned 10 s after its context ended")
	}
}

// TestTransportStatusUndefinedBits: status bits a driver may not set
// (undefined ones, the device's NEEDS_RESET) are dropped, so a driver
// that writes them leaves a status that restores. Before, they were
// kept, and the destination refused the saved status ("unknown bits"):
// the VM could not migrate.
func TestTransportStatusUndefinedBits(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.SetReg(regStatus, StatusAcknowledge|StatusNeedsReset|0x303000|0x30)
	if st, _ := tr.Status(); st != StatusAcknowledge {
		t.Fatalf("status %#x after the driver wrote undefined bits, want %#x", st, StatusAcknowledge)
	}
	d.Setup(FVersion1, 1, 8, 0x10000)
	d.SetReg(regStatus, 0xffffff00|StatusFailed)
	if st, _ := tr.Status(); st != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK|StatusFailed {
		t.Fatalf("status %#x after the driver wrote undefined bits", st)
	}
	if _, _, dev2, _ := migrate(t, d, tr); dev2.q == nil {
		t.Fatal("the destination's device was not activated")
	}
}

// setupQueue negotiates VERSION_1 and makes queue 0 ready (8 entries at
// base), without DRIVER_OK.
func setupQueue(d *virtiotest.Driver, base uint64) {
	d.SetReg(regStatus, StatusAcknowledge|StatusDriver)
	d.SetReg(regDriverFeaturesSel, 1)
	d.SetReg(regDriverFeatures, 1) // VERSION_1
	d.SetReg(regQueueSel, 0)
	d.SetReg(regQueueNum, 8)
	d.SetReg(regQueueDescLow, uint32(base))
	d.SetReg(regQueueDriverLow, uint32(base+0x80))
	d.SetReg(regQueueDeviceLow, uint32(base+0x8000))
	d.SetReg(regQueueReady, 1)
}

func TestTransportRestoreRejects(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	good := tr.Save()
	for _, tc := range []struct {
		name string
		edit func(s *TransportState)
		want string
	}{
		{"queue count", func(s *TransportState) { s.Queues = append(s.Queues, QueueState{}) }, "2 queues saved"},
		{"status bits", func(s *TransportState) { s.Status |= 0x100 }, "unknown bits"},
		{"features", func(s *TransportState) { s.DrvFeatures |= 1 << 20 }, "not offered"},
		{"no VERSION_1", func(s *TransportState) { s.DrvFeatures = 0 }, "not offered"},
		{"queue too big", func(s *TransportState) { s.Queues[0].Size = 16 }, "at most 8"},
		{"ring outside RAM", func(s *TransportState) { s.Queues[0].UsedAddr = 1 << 40 }, "not in guest RAM"},
		{"in flight", func(s *TransportState) { s.Queues[0].NextAvail = 9 }, "in flight"},
		{"interrupt bits", func(s *TransportState) { s.IntStatus = 4 }, "interrupt status"},
	} {
		s := good
		s.Queues = append([]QueueState(nil), good.Queues...)
		tc.edit(&s)
		_, tr2, _, _ := newTest(t)
		if err := tr2.Restore(context.Background(), s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Restore = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestTransportStateDecodeErrors(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	good, _ := tr.Save().MarshalBinary()
	for _, b := range [][]byte{nil, good[:len(good)-1], append(append([]byte{}, good...), 1)} {
		var s TransportState
		if err := s.UnmarshalBinary(b); err == nil || !errors.Is(err, state.ErrBadState) {
			t.Errorf("%d bytes: %v", len(b), err)
		}
	}
}

func FuzzTransportState(f *testing.F) {
	good, _ := TransportState{Status: 15, DrvFeatures: FVersion1, FailReason: "x",
		Queues: []QueueState{{Size: 8, Ready: true, DescAddr: 0x10000, AvailAddr: 0x10080, UsedAddr: 0x18000}}}.MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s TransportState
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("does not re-encode: %v", err)
		}
		_, tr, _, _ := newTest(t)
		_ = tr.Restore(context.Background(), s) // must not panic, whatever it says
	})
}

// TestQueueNumOverMaxMigrates: a driver that writes a QueueNum over its
// QueueNumMax (within the spec's 32768) and leaves the queue unready
// leaves a transport that saves and restores: the size was saved as
// written, and the destination's check refused it, so the guest made
// its VM unmigratable (FuzzGuestDriver in vmm/devices/balloon found it).
func TestQueueNumOverMaxMigrates(t *testing.T) {
	d, tr, _, _ := newTest(t)
	d.SetReg(regStatus, StatusAcknowledge|StatusDriver)
	d.SetReg(regQueueSel, 0)
	d.SetReg(regQueueNum, 16) // QueueNumMax is 8
	migrate(t, d, tr)
}
