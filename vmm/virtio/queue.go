package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Memory is guest RAM as a device sees it.
type Memory interface {
	// Slice returns the host bytes of guest physical [gpa, gpa+n), or an
	// error if any of it is not RAM.
	Slice(gpa, n uint64) ([]byte, error)
	// MarkDirty records that the VMM wrote [gpa, gpa+n).
	MarkDirty(gpa, n uint64)
}

// Checker is implemented by a Memory whose Slice does more than check
// bounds (the VMM's guest RAM during post-copy brings the pages in first,
// vmm/guestram.go). A queue checks the ranges it only validates, never
// reads (ring geometry, descriptor buffers), with Check instead.
type Checker interface {
	// Check returns the error Slice would for [gpa, gpa+n), without
	// reaching the bytes.
	Check(gpa, n uint64) error
}

// inRAM checks that [gpa, gpa+n) is RAM without reaching its bytes where
// mem allows (Checker).
func inRAM(mem Memory, gpa, n uint64) error {
	if c, ok := mem.(Checker); ok {
		return c.Check(gpa, n)
	}
	_, err := mem.Slice(gpa, n)
	return err
}

// Descriptor flags (split ring).
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4
)

// MaxQueueSize is the largest split ring the spec allows.
const MaxQueueSize = 32768

// Desc is one validated descriptor of a chain.
type Desc struct {
	Addr  uint64 // guest physical address, [Addr, Addr+Len) is RAM
	Len   uint32
	Write bool // device-writable
}

// Chain is one available buffer: the head index and its descriptors in order.
type Chain struct {
	Head  uint16
	Descs []Desc
}

// ErrQueue marks guest mistakes in queue contents; the transport answers
// them with NEEDS_RESET.
var ErrQueue = errors.New("virtqueue")

func queueErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrQueue}, args...)...)
}

// Queue is a split virtqueue as the device sees it. The transport fills
// Size and the three ring addresses from the driver's registers; a device
// uses Pop and Push only after the transport activated it, and from one
// goroutine at a time.
type Queue struct {
	MaxSize   uint16
	Size      uint16
	Ready     bool
	DescAddr  uint64
	AvailAddr uint64
	UsedAddr  uint64

	nextAvail uint16 // next avail ring slot the device will read
	nextUsed  uint16 // next used ring slot the device will write
}

// validate checks the ring geometry against guest RAM.
func (q *Queue) validate(mem Memory) error {
	n := uint64(q.Size)
	switch {
	case q.Size == 0 || q.Size&(q.Size-1) != 0 || q.Size > q.MaxSize:
		return queueErr("size %d is not a power of two up to %d", q.Size, q.MaxSize)
	case q.DescAddr%16 != 0 || q.AvailAddr%2 != 0 || q.UsedAddr%4 != 0:
		return queueErr("misaligned rings desc=%#x avail=%#x used=%#x", q.DescAddr, q.AvailAddr, q.UsedAddr)
	}
	for _, r := range []struct {
		name      string
		addr, len uint64
	}{{"descriptor table", q.DescAddr, 16 * n}, {"available ring", q.AvailAddr, 6 + 2*n}, {"used ring", q.UsedAddr, 6 + 8*n}} {
		if err := inRAM(mem, r.addr, r.len); err != nil {
			return queueErr("%s at %#x+%#x is not in guest RAM", r.name, r.addr, r.len)
		}
	}
	return nil
}

// Pending reports how many chains the driver has made available.
func (q *Queue) Pending(mem Memory) (int, error) {
	avail, err := mem.Slice(q.AvailAddr, 4)
	if err != nil {
		return 0, queueErr("available ring gone: %v", err)
	}
	n := binary.LittleEndian.Uint16(avail[2:]) - q.nextAvail
	if n > q.Size {
		return 0, queueErr("available index moved by %d on a ring of %d", n, q.Size)
	}
	return int(n), nil
}

// Pop takes the next available chain; ok is false when there is none.
func (q *Queue) Pop(mem Memory) (c Chain, ok bool, err error) {
	n, err := q.Pending(mem)
	if err != nil || n == 0 {
		return Chain{}, false, err
	}
	slot := uint64(q.nextAvail % q.Size)
	ring, err := mem.Slice(q.AvailAddr+4+2*slot, 2)
	if err != nil {
		return Chain{}, false, queueErr("available ring gone: %v", err)
	}
	head := binary.LittleEndian.Uint16(ring)
	c, err = q.walk(mem, head)
	if err != nil {
		return Chain{}, false, err
	}
	q.nextAvail++
	return c, true, nil
}

// walk follows a descriptor chain from head, validating every descriptor.
func (q *Queue) walk(mem Memory, head uint16) (Chain, error) {
	c := Chain{Head: head}
	table, err := mem.Slice(q.DescAddr, 16*uint64(q.Size))
	if err != nil {
		return c, queueErr("descriptor table gone: %v", err)
	}
	idx := head
	for {
		if idx >= q.Size {
			return c, queueErr("descriptor index %d out of a ring of %d", idx, q.Size)
		}
		if len(c.Descs) == int(q.Size) {
			return c, queueErr("chain from %d is longer than the ring (loop?)", head)
		}
		d := table[16*uint64(idx):]
		addr, length := binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint32(d[8:])
		flags, next := binary.LittleEndian.Uint16(d[12:]), binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			return c, queueErr("indirect descriptor %d, but INDIRECT_DESC was not offered", idx)
		}
		if err := inRAM(mem, addr, uint64(length)); err != nil {
			return c, queueErr("descriptor %d buffer %#x+%#x is not in guest RAM", idx, addr, length)
		}
		c.Descs = append(c.Descs, Desc{Addr: addr, Len: length, Write: flags&descFWrite != 0})
		if flags&descFNext == 0 {
			return c, nil
		}
		idx = next
	}
}

// Push returns chain head to the driver with written bytes of device
// output, and marks the used ring dirty.
func (q *Queue) Push(mem Memory, head uint16, written uint32) error {
	slot := uint64(q.nextUsed % q.Size)
	elem := q.UsedAddr + 4 + 8*slot
	b, err := mem.Slice(elem, 8)
	if err != nil {
		return queueErr("used ring gone: %v", err)
	}
	binary.LittleEndian.PutUint32(b, uint32(head))
	binary.LittleEndian.PutUint32(b[4:], written)
	mem.MarkDirty(elem, 8)
	q.nextUsed++
	idx, err := mem.Slice(q.UsedAddr+2, 2)
	if err != nil {
		return queueErr("used ring gone: %v", err)
	}
	// The element above is stored before the index: x86 keeps stores in
	// order, and the driver reads the index first.
	binary.LittleEndian.PutUint16(idx, q.nextUsed)
	mem.MarkDirty(q.UsedAddr+2, 2)
	return nil
}

// reset forgets the ring (driver reset or QueueReady=0).
func (q *Queue) reset() {
	*q = Queue{MaxSize: q.MaxSize}
}

// QueueState is a queue's position, saved for migration.
type QueueState struct {
	Size                          uint16
	Ready                         bool
	DescAddr, AvailAddr, UsedAddr uint64
	NextAvail, NextUsed           uint16
}

// State returns the queue's registers and ring positions.
func (q *Queue) State() QueueState {
	return QueueState{q.Size, q.Ready, q.DescAddr, q.AvailAddr, q.UsedAddr, q.nextAvail, q.nextUsed}
}
