// Package bus routes guest port I/O and MMIO accesses to devices.
//
// A Bus maps non-overlapping address ranges to devices; an access is handed
// to the device with its offset from the range's base. The same type serves
// the 16-bit port space and the 64-bit MMIO space. Registration happens
// before the vCPUs start; lookups afterwards take no lock.
package bus

import (
	"fmt"
	"sort"
)

// Device handles accesses inside its range. offset is relative to the base
// the device was registered at; len(data) is the access width (1, 2, 4 or
// 8). Read fills data. Calls come from vCPU threads, possibly concurrently
// when there are several vCPUs, so devices lock their own state.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

type entry struct {
	base, size uint64
	name       string
	dev        Device
}

// Bus is an address space of devices. Register before use; not safe to
// Register concurrently with accesses.
type Bus struct {
	entries []entry // sorted by base, non-overlapping
}

// Register places dev at [base, base+size).
func (b *Bus) Register(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("bus: %s: bad range %#x+%#x", name, base, size)
	}
	for _, e := range b.entries {
		if base < e.base+e.size && e.base < base+size {
			return fmt.Errorf("bus: %s at %#x+%#x overlaps %s at %#x+%#x", name, base, size, e.name, e.base, e.size)
		}
	}
	b.entries = append(b.entries, entry{base, size, name, dev})
	sort.Slice(b.entries, func(i, j int) bool { return b.entries[i].base < b.entries[j].base })
	return nil
}

// find returns the device whose range holds the whole access.
func (b *Bus) find(addr uint64, n int) (*entry, bool) {
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base+b.entries[i].size > addr })
	if i == len(b.entries) {
		return nil, false
	}
	e := &b.entries[i]
	if addr < e.base || addr-e.base+uint64(n) > e.size {
		return nil, false
	}
	return e, true
}

// Read dispatches a read; it reports false (and fills data with 0xff, as
// an empty ISA bus reads) when no device covers the access.
func (b *Bus) Read(addr uint64, data []byte) bool {
	e, ok := b.find(addr, len(data))
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		return false
	}
	e.dev.Read(addr-e.base, data)
	return true
}

// Write dispatches a write; it reports false when no device covers it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	e, ok := b.find(addr, len(data))
	if !ok {
		return false
	}
	e.dev.Write(addr-e.base, data)
	return true
}
