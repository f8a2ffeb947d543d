package virtio

import (
	"encoding/binary"
	"strings"
	"testing"
)

func newTest(t *testing.T) (*fakeDriver, *echoDevice, *int) {
	mem := newFlatMem(1 << 20)
	dev := &echoDevice{mem: mem}
	irqs := new(int)
	tr := NewTransport("echo", dev, mem, func() { *irqs++ }, nil)
	dev.sig = tr
	return &fakeDriver{t: t, tr: tr, mem: mem}, dev, irqs
}

func TestRegisters(t *testing.T) {
	d, _, _ := newTest(t)
	if d.r(regMagic) != 0x74726976 || d.r(regVersion) != 2 || d.r(regDeviceID) != 42 {
		t.Fatalf("magic %#x version %d id %d", d.r(regMagic), d.r(regVersion), d.r(regDeviceID))
	}
	d.w(regDeviceFeaturesSel, 0)
	lo := d.r(regDeviceFeatures)
	d.w(regDeviceFeaturesSel, 1)
	hi := d.r(regDeviceFeatures)
	if lo != 1<<3 || hi != 1 {
		t.Errorf("features lo %#x hi %#x, want bit 3 and VERSION_1", lo, hi)
	}
	d.w(regQueueSel, 0)
	if d.r(regQueueNumMax) != 8 {
		t.Errorf("QueueNumMax %d", d.r(regQueueNumMax))
	}
	d.w(regQueueSel, 1)
	if d.r(regQueueNumMax) != 0 {
		t.Error("absent queue 1 has a size")
	}
	// Narrow register accesses read as zero and write nothing.
	b := []byte{0xff, 0xff}
	d.tr.Read(regMagic, b)
	if b[0] != 0 || b[1] != 0 {
		t.Error("2-byte register read returned data")
	}
}

func TestFeatureNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		ok       bool
	}{
		{"version 1 only", FVersion1, true},
		{"all offered", FVersion1 | 1<<3, true},
		{"no VERSION_1", 1 << 3, false},
		{"not offered", FVersion1 | 1<<5, false},
	} {
		d, _, _ := newTest(t)
		d.w(regStatus, StatusAcknowledge|StatusDriver)
		d.w(regDriverFeaturesSel, 0)
		d.w(regDriverFeatures, uint32(tc.features))
		d.w(regDriverFeaturesSel, 1)
		d.w(regDriverFeatures, uint32(tc.features>>32))
		d.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
		if got := d.r(regStatus)&StatusFeaturesOK != 0; got != tc.ok {
			t.Errorf("%s: FEATURES_OK = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestQueueRoundTrip(t *testing.T) {
	d, dev, irqs := newTest(t)
	d.setup(FVersion1, 0x10000, 8)
	if dev.q == nil {
		t.Fatal("device not activated at DRIVER_OK")
	}
	// Wrap the ring several times: 3 chains of (readable 16 B -> writable 100 B).
	for i := 0; i < 20; i++ {
		head := uint16(i*2) % 8
		d.putDesc(head, 0x40000, 16, descFNext, (head+1)%8)
		d.putDesc((head+1)%8, 0x50000+uint64(i)*0x1000, 100, descFWrite, 0)
		d.offer(head)
		if got := d.usedIdx(); got != uint16(i+1) {
			t.Fatalf("round %d: used idx %d", i, got)
		}
		id, n := d.usedElem(uint16(i))
		if id != uint32(head) || n != 100 {
			t.Fatalf("round %d: used elem id %d len %d", i, id, n)
		}
		if d.mem.b[0x50000+uint64(i)*0x1000] != 0xab {
			t.Fatal("writable buffer not written")
		}
		if !d.mem.dirty[(0x50000+uint64(i)*0x1000)/4096] {
			t.Fatal("device write not marked dirty")
		}
	}
	if !d.mem.dirty[d.used/4096] {
		t.Error("used ring not marked dirty")
	}
	if *irqs != 20 || d.r(regInterruptStatus) != InterruptUsed {
		t.Errorf("irqs %d status %#x", *irqs, d.r(regInterruptStatus))
	}
	d.w(regInterruptACK, InterruptUsed)
	if d.r(regInterruptStatus) != 0 {
		t.Error("ACK did not clear")
	}
	d.w(regStatus, 0)
	if dev.resets == 0 || d.r(regStatus) != 0 || d.r(regQueueReady) != 0 {
		t.Error("reset did not reach device or queue")
	}
}

func TestHostileQueues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(d *fakeDriver)
		want  string
	}{
		{"head out of range", func(d *fakeDriver) { d.offer(9) }, "out of a ring"},
		{"loop", func(d *fakeDriver) {
			d.putDesc(0, 0x40000, 8, descFNext, 1)
			d.putDesc(1, 0x40000, 8, descFNext, 0)
			d.offer(0)
		}, "loop"},
		{"buffer outside RAM", func(d *fakeDriver) { d.putDesc(0, 0xfff00, 0x1000, descFWrite, 0); d.offer(0) }, "not in guest RAM"},
		{"huge length", func(d *fakeDriver) { d.putDesc(0, 0x1000, 0xffffffff, 0, 0); d.offer(0) }, "not in guest RAM"},
		{"address wraps", func(d *fakeDriver) { d.putDesc(0, ^uint64(0)-4, 16, 0, 0); d.offer(0) }, "not in guest RAM"},
		{"indirect", func(d *fakeDriver) { d.putDesc(0, 0x40000, 32, descFIndirect, 0); d.offer(0) }, "indirect"},
		{"avail idx jump", func(d *fakeDriver) {
			binary.LittleEndian.PutUint16(d.mem.b[d.avail+2:], 100)
			d.w(regQueueNotify, 0)
		}, "moved by 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev, _ := newTest(t)
			d.setup(FVersion1, 0x10000, 8)
			tc.build(d)
			st, reason := d.tr.Status()
			if st&StatusNeedsReset == 0 || !strings.Contains(reason, tc.want) {
				t.Fatalf("status %#x reason %q, want NEEDS_RESET with %q", st, reason, tc.want)
			}
			if d.r(regInterruptStatus)&InterruptConfig == 0 {
				t.Error("no config interrupt on NEEDS_RESET")
			}
			before := dev.notify
			d.w(regQueueNotify, 0)
			if dev.notify != before {
				t.Error("notify reached a failed device")
			}
			// A reset recovers the device.
			d.availIdx = 0
			d.setup(FVersion1, 0x10000, 8)
			if st, _ := d.tr.Status(); st&StatusNeedsReset != 0 {
				t.Error("NEEDS_RESET survived a reset")
			}
		})
	}
}

func TestBadQueueSetup(t *testing.T) {
	for _, tc := range []struct {
		name       string
		num        uint32
		desc, used uint64
	}{
		{"not power of two", 6, 0x10000, 0x11000},
		{"too big", 16, 0x10000, 0x11000},
		{"misaligned desc", 8, 0x10008, 0x11000},
		{"rings outside RAM", 8, 0xfffff0, 0x11000},
	} {
		d, _, _ := newTest(t)
		d.w(regStatus, StatusAcknowledge|StatusDriver)
		d.w(regQueueSel, 0)
		d.w(regQueueNum, tc.num)
		d.w(regQueueDescLow, uint32(tc.desc))
		d.w(regQueueDriverLow, 0x10800)
		d.w(regQueueDeviceLow, uint32(tc.used))
		d.w(regQueueReady, 1)
		if d.r(regQueueReady) != 0 {
			t.Errorf("%s: queue became ready", tc.name)
		}
		if st, _ := d.tr.Status(); st&StatusNeedsReset == 0 {
			t.Errorf("%s: no NEEDS_RESET", tc.name)
		}
	}
}

// FuzzQueue fills the rings with arbitrary bytes: the device must never
// panic and never return a buffer outside guest RAM.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0}, []byte{0, 0, 0x40, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, avail, desc []byte) {
		mem := newFlatMem(1 << 16)
		q := &Queue{MaxSize: 8, Size: 8, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000, Ready: true}
		copy(mem.b[0x1000:0x1080], desc)
		copy(mem.b[0x2000:0x2016], avail)
		for i := 0; i < 20; i++ {
			c, ok, err := q.Pop(mem)
			if err != nil || !ok {
				return
			}
			for _, d := range c.Descs {
				if d.Addr+uint64(d.Len) > uint64(len(mem.b)) || d.Addr+uint64(d.Len) < d.Addr {
					t.Fatalf("descriptor outside RAM: %+v", d)
				}
			}
			if err := q.Push(mem, c.Head, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}
