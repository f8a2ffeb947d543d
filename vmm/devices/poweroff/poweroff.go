package poweroff

import (
	"encoding/binary"
	"sync"
)

const (
	// Port is the I/O port the device is registered at.
	Port = 0xf4
	// Size is the number of ports it occupies (one 32-bit register).
	Size = 4
)

// Device is the exit-code register. It is safe for concurrent use.
type Device struct {
	once   sync.Once
	onExit func(code int)
}

// New returns a device that calls onExit (if not nil) on the guest's first
// exit write. onExit runs on the vCPU thread that wrote the port and must
// not block: record the code and tell the run loop to stop.
func New(onExit func(code int)) *Device {
	return &Device{onExit: onExit}
}

// Read implements bus.Device: the register reads as zeros.
func (d *Device) Read(offset uint64, data []byte) {
	clear(data)
}

// Write implements bus.Device. A write at offset 0 of 1, 2 or 4 bytes
// (little-endian value v) calls onExit(int(v & 0xff)); only the first such
// write counts, later ones are ignored. Other writes are ignored.
func (d *Device) Write(offset uint64, data []byte) {
	if offset != 0 || d.onExit == nil {
		return
	}
	var v uint32
	switch len(data) {
	case 1:
		v = uint32(data[0])
	case 2:
		v = uint32(binary.LittleEndian.Uint16(data))
	case 4:
		v = binary.LittleEndian.Uint32(data)
	default:
		return
	}
	d.once.Do(func() { d.onExit(int(v & 0xff)) })
}
