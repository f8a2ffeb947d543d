// Package virtiotest is a fake virtio-mmio guest driver and a flat guest
// RAM, for unit-testing devices without a VM. The driver speaks to a
// Transport through its register window exactly as a guest would; it
// keeps each queue's rings at fixed addresses in the fake RAM.
//
// It is deliberately simple: one free-descriptor cursor per queue (each
// Add takes fresh descriptors, wrapping), no interrupts (callers poll
// Used), no event index.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/ferryvm/ferry/vmm/bus"
)

// Mem is guest RAM [0, len(B)) that records VMM writes and discards.
type Mem struct {
	B         []byte
	Dirty     map[uint64]bool // page numbers the VMM marked
	Discarded map[uint64]bool // page numbers punched out
}

// NewMem returns size bytes of zeroed fake RAM.
func NewMem(size int) *Mem {
	return &Mem{B: make([]byte, size), Dirty: map[uint64]bool{}, Discarded: map[uint64]bool{}}
}

// Slice implements virtio.Memory.
func (m *Mem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m.B)) || n > uint64(len(m.B))-gpa {
		return nil, fmt.Errorf("%#x+%#x outside RAM", gpa, n)
	}
	return m.B[gpa : gpa+n : gpa+n], nil
}

// MarkDirty implements virtio.Memory.
func (m *Mem) MarkDirty(gpa, n uint64) {
	for p := gpa / 4096; n > 0 && p <= (gpa+n-1)/4096; p++ {
		m.Dirty[p] = true
	}
}

// Discard zeroes [gpa, gpa+n) and records it, like a punched memfd.
func (m *Mem) Discard(gpa, n uint64) error {
	b, err := m.Slice(gpa, n)
	if err != nil {
		return err
	}
	clear(b)
	for p := gpa / 4096; p < (gpa+n)/4096; p++ {
		m.Discarded[p] = true
	}
	m.MarkDirty(gpa, n)
	return nil
}

// Buf is one buffer of a chain the driver adds.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// UsedElem is a returned chain.
type UsedElem struct{ ID, Len uint32 }

type vq struct {
	size               uint16
	desc, avail, used  uint64
	nextDesc, availIdx uint16
	lastUsed           uint16
}

// Driver is a fake guest driver on a device's register window.
type Driver struct {
	T      testing.TB
	Dev    bus.Device
	Mem    *Mem
	queues []*vq
}

func (d *Driver) w(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Dev.Write(off, b[:])
}

// Reg reads a 32-bit transport register.
func (d *Driver) Reg(off uint64) uint32 {
	var b [4]byte
	d.Dev.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// SetReg writes a 32-bit transport register.
func (d *Driver) SetReg(off uint64, v uint32) { d.w(off, v) }

// Config reads 4 bytes of device config at off.
func (d *Driver) Config(off uint64) uint32 { return d.Reg(0x100 + off) }

// SetConfig writes 4 bytes of device config at off.
func (d *Driver) SetConfig(off uint64, v uint32) { d.w(0x100+off, v) }

// Setup resets the device, negotiates features and sets up n queues of
// size each, with rings from ringBase up (64 KiB per queue), then sets
// DRIVER_OK. It reports whether the device accepted the features.
func (d *Driver) Setup(features uint64, n int, size uint16, ringBase uint64) bool {
	if !d.Prepare(features, n, size, ringBase) {
		return false
	}
	d.w(0x070, 1|2|8|4)
	return true
}

// Prepare is Setup without its last step, DRIVER_OK, which the caller
// writes (from another goroutine, say). It zeroes each queue's rings
// before it hands them to the device, as a real driver's fresh
// allocation is (Linux's vring memory): what a queue held before a
// reset is not made available again.
func (d *Driver) Prepare(features uint64, n int, size uint16, ringBase uint64) bool {
	d.w(0x070, 0)
	d.w(0x070, 1|2)
	d.w(0x024, 0)
	d.w(0x020, uint32(features))
	d.w(0x024, 1)
	d.w(0x020, uint32(features>>32))
	d.w(0x070, 1|2|8)
	if d.Reg(0x070)&8 == 0 {
		return false
	}
	d.queues = nil
	for i := 0; i < n; i++ {
		base := ringBase + uint64(i)<<16
		q := &vq{size: size, desc: base, avail: base + 16*uint64(size), used: base + 0x8000}
		d.queues = append(d.queues, q)
		clear(d.Mem.B[q.desc : q.desc+16*uint64(size)])
		clear(d.Mem.B[q.avail : q.avail+6+2*uint64(size)])
		clear(d.Mem.B[q.used : q.used+6+8*uint64(size)])
		d.w(0x030, uint32(i))
		if max := d.Reg(0x034); max < uint32(size) {
			d.T.Fatalf("queue %d: QueueNumMax %d < %d", i, max, size)
		}
		d.w(0x038, uint32(size))
		for _, r := range []struct {
			off  uint64
			addr uint64
		}{{0x080, q.desc}, {0x090, q.avail}, {0x0a0, q.used}} {
			d.w(r.off, uint32(r.addr))
			d.w(r.off+4, uint32(r.addr>>32))
		}
		d.w(0x044, 1)
	}
	return true
}

// Add places a chain on queue qi and makes it available (without a kick).
func (d *Driver) Add(qi int, bufs ...Buf) uint16 {
	q := d.queues[qi]
	head := q.nextDesc
	for i, b := range bufs {
		idx := q.nextDesc
		q.nextDesc = (q.nextDesc + 1) % q.size
		var flags uint16
		if b.Write {
			flags |= 2
		}
		if i < len(bufs)-1 {
			flags |= 1
		}
		d.PutDesc(qi, idx, b.Addr, b.Len, flags, q.nextDesc)
	}
	d.publish(q, head)
	return head
}

func (d *Driver) publish(q *vq, head uint16) {
	binary.LittleEndian.PutUint16(d.Mem.B[q.avail+4+2*uint64(q.availIdx%q.size):], head)
	q.availIdx++
	binary.LittleEndian.PutUint16(d.Mem.B[q.avail+2:], q.availIdx)
}

// Kick notifies queue qi.
func (d *Driver) Kick(qi int) { d.w(0x050, uint32(qi)) }

// Used reaps the chains the device returned on queue qi since the last call.
func (d *Driver) Used(qi int) []UsedElem {
	q := d.queues[qi]
	idx := binary.LittleEndian.Uint16(d.Mem.B[q.used+2:])
	var out []UsedElem
	for ; q.lastUsed != idx; q.lastUsed++ {
		e := d.Mem.B[q.used+4+8*uint64(q.lastUsed%q.size):]
		out = append(out, UsedElem{binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])})
	}
	return out
}

// UsedRing returns queue qi's used ring address (for dirty checks).
func (d *Driver) UsedRing(qi int) uint64 { return d.queues[qi].used }

// PutLE32 writes v at gpa.
func (d *Driver) PutLE32(gpa uint64, v uint32) { binary.LittleEndian.PutUint32(d.Mem.B[gpa:], v) }

// PutDesc writes raw descriptor idx of queue qi, for tests that build
// chains a well-behaved driver would not.
func (d *Driver) PutDesc(qi int, idx uint16, addr uint64, length uint32, flags, next uint16) {
	q := d.queues[qi]
	e := d.Mem.B[q.desc+16*uint64(idx):]
	binary.LittleEndian.PutUint64(e, addr)
	binary.LittleEndian.PutUint32(e[8:], length)
	binary.LittleEndian.PutUint16(e[12:], flags)
	binary.LittleEndian.PutUint16(e[14:], next)
}

// Offer makes head available on queue qi and kicks it.
func (d *Driver) Offer(qi int, head uint16) {
	d.publish(d.queues[qi], head)
	d.Kick(qi)
}

// SetAvailIdx overwrites queue qi's available index and kicks it.
func (d *Driver) SetAvailIdx(qi int, idx uint16) {
	binary.LittleEndian.PutUint16(d.Mem.B[d.queues[qi].avail+2:], idx)
	d.Kick(qi)
}
