package virtio

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/vmm/virtio/virtiotest"
)

func TestRegisters(t *testing.T) {
	d, _, _, _ := newTest(t)
	if d.Reg(regMagic) != 0x74726976 || d.Reg(regVersion) != 2 || d.Reg(regDeviceID) != 42 {
		t.Fatalf("magic %#x version %d id %d", d.Reg(regMagic), d.Reg(regVersion), d.Reg(regDeviceID))
	}
	d.SetReg(regDeviceFeaturesSel, 0)
	lo := d.Reg(regDeviceFeatures)
	d.SetReg(regDeviceFeaturesSel, 1)
	hi := d.Reg(regDeviceFeatures)
	if lo != 1<<3 || hi != 1 {
		t.Errorf("features lo %#x hi %#x, want bit 3 and VERSION_1", lo, hi)
	}
	d.SetReg(regQueueSel, 0)
	if d.Reg(regQueueNumMax) != 8 {
		t.Errorf("QueueNumMax %d", d.Reg(regQueueNumMax))
	}
	d.SetReg(regQueueSel, 1)
	if d.Reg(regQueueNumMax) != 0 {
		t.Error("absent queue 1 has a size")
	}
	if d.Config(0) != 0x04030201 || d.Config(4) != 0 {
		t.Errorf("config %#x %#x", d.Config(0), d.Config(4))
	}
	// Narrow register accesses read as zero and write nothing.
	b := []byte{0xff, 0xff}
	d.Dev.Read(regMagic, b)
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
		d, _, dev, _ := newTest(t)
		if ok := d.Setup(tc.features, 1, 8, 0x10000); ok != tc.ok {
			t.Errorf("%s: FEATURES_OK = %v, want %v", tc.name, ok, tc.ok)
		}
		if (dev.q != nil) != tc.ok {
			t.Errorf("%s: activated = %v", tc.name, dev.q != nil)
		}
	}
}

func TestQueueRoundTrip(t *testing.T) {
	d, _, dev, irqs := newTest(t)
	d.Setup(FVersion1, 1, 8, 0x10000)
	if dev.q == nil {
		t.Fatal("device not activated at DRIVER_OK")
	}
	// Wrap the ring several times: chains of (readable 16 B -> writable 100 B).
	for i := 0; i < 20; i++ {
		buf := 0x50000 + uint64(i)*0x1000
		head := d.Add(0, virtiotest.Buf{Addr: 0x40000, Len: 16}, virtiotest.Buf{Addr: buf, Len: 100, Write: true})
		d.Kick(0)
		used := d.Used(0)
		if len(used) != 1 || used[0].ID != uint32(head) || used[0].Len != 100 {
			t.Fatalf("round %d: used %+v, want head %d len 100", i, used, head)
		}
		if d.Mem.B[buf] != 0xab || !d.Mem.Dirty[buf/4096] {
			t.Fatal("writable buffer not written or not marked dirty")
		}
	}
	if !d.Mem.Dirty[d.UsedRing(0)/4096] {
		t.Error("used ring not marked dirty")
	}
	if *irqs != 20 || d.Reg(regInterruptStatus) != InterruptUsed {
		t.Errorf("irqs %d status %#x", *irqs, d.Reg(regInterruptStatus))
	}
	d.SetReg(regInterruptACK, InterruptUsed)
	if d.Reg(regInterruptStatus) != 0 {
		t.Error("ACK did not clear")
	}
	d.SetReg(regStatus, 0)
	if dev.resets == 0 || d.Reg(regStatus) != 0 || d.Reg(regQueueReady) != 0 {
		t.Error("reset did not reach device or queue")
	}
}

func TestHostileQueues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(d *virtiotest.Driver)
		want  string
	}{
		{"head out of range", func(d *virtiotest.Driver) { d.Offer(0, 9) }, "out of a ring"},
		{"loop", func(d *virtiotest.Driver) {
			d.PutDesc(0, 0, 0x40000, 8, descFNext, 1)
			d.PutDesc(0, 1, 0x40000, 8, descFNext, 0)
			d.Offer(0, 0)
		}, "loop"},
		{"buffer outside RAM", func(d *virtiotest.Driver) { d.PutDesc(0, 0, 0xfff00, 0x1000, descFWrite, 0); d.Offer(0, 0) }, "not in guest RAM"},
		{"huge length", func(d *virtiotest.Driver) { d.PutDesc(0, 0, 0x1000, 0xffffffff, 0, 0); d.Offer(0, 0) }, "not in guest RAM"},
		{"address wraps", func(d *virtiotest.Driver) { d.PutDesc(0, 0, ^uint64(0)-4, 16, 0, 0); d.Offer(0, 0) }, "not in guest RAM"},
		{"indirect", func(d *virtiotest.Driver) { d.PutDesc(0, 0, 0x40000, 32, descFIndirect, 0); d.Offer(0, 0) }, "indirect"},
		{"avail idx jump", func(d *virtiotest.Driver) { d.SetAvailIdx(0, 100) }, "moved by 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, tr, dev, _ := newTest(t)
			d.Setup(FVersion1, 1, 8, 0x10000)
			tc.build(d)
			st, reason := tr.Status()
			if st&StatusNeedsReset == 0 || !strings.Contains(reason, tc.want) {
				t.Fatalf("status %#x reason %q, want NEEDS_RESET with %q", st, reason, tc.want)
			}
			if d.Reg(regInterruptStatus)&InterruptConfig == 0 {
				t.Error("no config interrupt on NEEDS_RESET")
			}
			before := dev.notify
			d.Kick(0)
			if dev.notify != before {
				t.Error("notify reached a failed device")
			}
			// A reset recovers the device.
			d.Setup(FVersion1, 1, 8, 0x20000)
			if st, _ := tr.Status(); st&StatusNeedsReset != 0 {
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
		d, tr, _, _ := newTest(t)
		d.SetReg(regStatus, StatusAcknowledge|StatusDriver)
		d.SetReg(regQueueSel, 0)
		d.SetReg(regQueueNum, tc.num)
		d.SetReg(regQueueDescLow, uint32(tc.desc))
		d.SetReg(regQueueDriverLow, 0x10800)
		d.SetReg(regQueueDeviceLow, uint32(tc.used))
		d.SetReg(regQueueReady, 1)
		if d.Reg(regQueueReady) != 0 {
			t.Errorf("%s: queue became ready", tc.name)
		}
		if st, _ := tr.Status(); st&StatusNeedsReset == 0 {
			t.Errorf("%s: no NEEDS_RESET", tc.name)
		}
	}
}

// FuzzQueue fills the rings with arbitrary bytes: the device must never
// panic and never return a buffer outside guest RAM.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0}, []byte{0, 0, 0x40, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, avail, desc []byte) {
		mem := virtiotest.NewMem(1 << 16)
		q := &Queue{MaxSize: 8, Size: 8, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000, Ready: true}
		copy(mem.B[0x1000:0x1080], desc)
		copy(mem.B[0x2000:0x2016], avail)
		for i := 0; i < 20; i++ {
			c, ok, err := q.Pop(mem)
			if err != nil || !ok {
				return
			}
			for _, d := range c.Descs {
				if d.Addr+uint64(d.Len) > uint64(len(mem.B)) || d.Addr+uint64(d.Len) < d.Addr {
					t.Fatalf("descriptor outside RAM: %+v", d)
				}
			}
			if err := q.Push(mem, c.Head, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestFailuresRateLimited: a driver that breaks its queue, resets and
// breaks it again in a loop (or keeps offering features the device does
// not have) gets one log line per kind, not one per round.
func TestFailuresRateLimited(t *testing.T) {
	var buf bytes.Buffer
	mem := virtiotest.NewMem(1 << 20)
	dev := &echoDevice{mem: mem}
	tr := NewTransport("echo", dev, mem, nil, slog.New(slog.NewTextHandler(&buf, nil)))
	dev.sig = tr
	d := &virtiotest.Driver{T: t, Dev: tr, Mem: mem}
	for range 100 {
		d.Setup(FVersion1, 1, 8, 0x10000)
		d.Offer(0, 9) // head out of range: NEEDS_RESET
		d.SetReg(regStatus, 0)
		d.Setup(FVersion1|1<<40, 1, 8, 0x10000) // refused
		d.SetReg(regStatus, 0)
	}
	for _, msg := range []string{"needs reset", "features refused"} {
		if n := strings.Count(buf.String(), msg); n != 1 {
			t.Errorf("%d lines about %q after 100 rounds; want 1\n%s", n, msg, buf.String())
		}
	}
}
