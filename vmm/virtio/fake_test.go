package virtio

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// flatMem is guest RAM [0, len) for tests; it records VMM writes.
type flatMem struct {
	b     []byte
	dirty map[uint64]bool // page numbers
}

func newFlatMem(size int) *flatMem { return &flatMem{b: make([]byte, size), dirty: map[uint64]bool{}} }

func (m *flatMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m.b)) || n > uint64(len(m.b))-gpa {
		return nil, fmt.Errorf("%#x+%#x outside RAM", gpa, n)
	}
	return m.b[gpa : gpa+n], nil
}

func (m *flatMem) MarkDirty(gpa, n uint64) {
	for p := gpa / 4096; p <= (gpa+n-1)/4096; p++ {
		m.dirty[p] = true
	}
}

// fakeDriver plays a guest's virtio-mmio driver against a Transport.
type fakeDriver struct {
	t   *testing.T
	tr  *Transport
	mem *flatMem
	// ring layout per queue
	desc, avail, used uint64
	size              uint16
	nextDesc          uint16
	availIdx          uint16
}

func (d *fakeDriver) w(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.tr.Write(off, b[:])
}

func (d *fakeDriver) r(off uint64) uint32 {
	var b [4]byte
	d.tr.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// setup negotiates features and brings up queue 0 at base with size n.
func (d *fakeDriver) setup(features uint64, base uint64, n uint16) {
	d.w(regStatus, 0)
	d.w(regStatus, StatusAcknowledge|StatusDriver)
	d.w(regDriverFeaturesSel, 0)
	d.w(regDriverFeatures, uint32(features))
	d.w(regDriverFeaturesSel, 1)
	d.w(regDriverFeatures, uint32(features>>32))
	d.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if d.r(regStatus)&StatusFeaturesOK == 0 {
		d.t.Fatal("FEATURES_OK not accepted")
	}
	d.size = n
	d.desc, d.avail, d.used = base, base+16*uint64(n), base+0x1000*((16*uint64(n)+6+2*uint64(n)+0xfff)/0x1000)
	d.w(regQueueSel, 0)
	d.w(regQueueNum, uint32(n))
	d.w(regQueueDescLow, uint32(d.desc))
	d.w(regQueueDescHigh, uint32(d.desc>>32))
	d.w(regQueueDriverLow, uint32(d.avail))
	d.w(regQueueDriverHigh, uint32(d.avail>>32))
	d.w(regQueueDeviceLow, uint32(d.used))
	d.w(regQueueDeviceHigh, uint32(d.used>>32))
	d.w(regQueueReady, 1)
	d.w(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
}

// putDesc writes descriptor i.
func (d *fakeDriver) putDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	b := d.mem.b[d.desc+16*uint64(i):]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// offer makes head available and kicks queue 0.
func (d *fakeDriver) offer(head uint16) {
	binary.LittleEndian.PutUint16(d.mem.b[d.avail+4+2*uint64(d.availIdx%d.size):], head)
	d.availIdx++
	binary.LittleEndian.PutUint16(d.mem.b[d.avail+2:], d.availIdx)
	d.w(regQueueNotify, 0)
}

func (d *fakeDriver) usedIdx() uint16 { return binary.LittleEndian.Uint16(d.mem.b[d.used+2:]) }

func (d *fakeDriver) usedElem(i uint16) (id, length uint32) {
	b := d.mem.b[d.used+4+8*uint64(i%d.size):]
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

// echoDevice is a test device with one queue: it returns every chain with
// the total length of its writable descriptors, filling them with 0xab.
type echoDevice struct {
	q      *Queue
	mem    Memory
	sig    Signaller
	chains []Chain
	resets int
	cfg    [8]byte
	notify int
}

func (e *echoDevice) ID() uint32                          { return 42 }
func (e *echoDevice) Features() uint64                    { return 1 << 3 }
func (e *echoDevice) QueueSizes() []uint16                { return []uint16{8} }
func (e *echoDevice) ReadConfig(off uint64, data []byte)  { CopyConfig(data, e.cfg[:], off) }
func (e *echoDevice) WriteConfig(off uint64, data []byte) {}
func (e *echoDevice) Activate(q []*Queue, f uint64) error { e.q = q[0]; return nil }
func (e *echoDevice) Reset()                              { e.q = nil; e.resets++ }
func (e *echoDevice) Notify(int) {
	e.notify++
	for e.q != nil {
		c, ok, err := e.q.Pop(e.mem)
		if err != nil {
			e.sig.Fail(err.Error())
			e.q = nil
			return
		}
		if !ok {
			break
		}
		e.chains = append(e.chains, c)
		var n uint32
		for _, d := range c.Descs {
			if d.Write {
				b, _ := e.mem.Slice(d.Addr, uint64(d.Len))
				for i := range b {
					b[i] = 0xab
				}
				e.mem.MarkDirty(d.Addr, uint64(d.Len))
				n += d.Len
			}
		}
		if err := e.q.Push(e.mem, c.Head, n); err != nil {
			e.sig.Fail(err.Error())
			return
		}
		e.sig.SignalUsed()
	}
}
