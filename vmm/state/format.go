package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Magic starts every state blob.
const Magic = "FERRYVMS"

// Version is the container version this build writes. Version 0 is
// reserved as invalid.
const Version = 1

// MinVersion is the oldest container version Decode reads. The rule
// (docs/ARCHITECTURE.md#versions): a destination reads the current and the
// previous version, so MinVersion is Version-1 once there is a previous
// one; TestVersionCompat holds it to that and to the previous version's
// golden blob.
const MinVersion = 1

// Limits on what Decode accepts.
const (
	// MaxSize bounds a whole blob: a vCPU's state is about 8 KiB, so even
	// hundreds of vCPUs stay far below it.
	MaxSize = 64 << 20
	// MaxSections bounds the section count.
	MaxSections = 4096

	headerSize  = 16
	sectionHead = 12
	trailerSize = 4
)

// SectionType says what a section holds. 0 is invalid.
type SectionType uint16

// The section types of version 1.
const (
	SecMachine    SectionType = 1 // RAM size, vCPU count, devices: what the target must match
	SecVCPU       SectionType = 2 // one vCPU (id = index): vcpu.State
	SecClock      SectionType = 3 // kvmclock (KVM_GET_CLOCK)
	SecPIT        SectionType = 4 // in-kernel i8254 (KVM_GET_PIT2)
	SecIRQChip    SectionType = 5 // id 0 PIC master, 1 PIC slave, 2 IOAPIC (KVM_GET_IRQCHIP)
	SecUART       SectionType = 6 // 8250 UART (id = COM index): uart.State
	SecVirtioMMIO SectionType = 7 // virtio-mmio transport (id = window): virtio.TransportState
	SecBalloon    SectionType = 8 // virtio-balloon device (id = window): balloon.State

	maxSectionType = SecBalloon
)

var typeNames = [...]string{"invalid", "machine", "vcpu", "clock", "pit", "irqchip", "uart", "virtio-mmio", "balloon"}

func (t SectionType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("section-type-%d", uint16(t))
}

// Section is one typed piece of a blob.
type Section struct {
	Type SectionType
	ID   uint32
	Data []byte
}

// ErrBadState is wrapped by every error about a malformed blob.
var ErrBadState = errors.New("bad VM state")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode builds a blob from sections, in the order given.
func Encode(sections []Section) ([]byte, error) {
	if len(sections) > MaxSections {
		return nil, fmt.Errorf("encode VM state: %d sections, at most %d", len(sections), MaxSections)
	}
	size := headerSize + trailerSize
	for _, s := range sections {
		if s.Type == 0 || s.Type > maxSectionType {
			return nil, fmt.Errorf("encode VM state: section type %d is not defined", s.Type)
		}
		size += sectionHead + len(s.Data)
	}
	if size > MaxSize {
		return nil, fmt.Errorf("encode VM state: %d bytes, at most %d", size, MaxSize)
	}
	b := make([]byte, 0, size)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(sections)))
	for _, s := range sections {
		b = binary.LittleEndian.AppendUint16(b, uint16(s.Type))
		b = binary.LittleEndian.AppendUint16(b, 0)
		b = binary.LittleEndian.AppendUint32(b, s.ID)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Data)))
		b = append(b, s.Data...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadState}, args...)...)
}

// Decode checks a blob and splits it into sections. The sections' Data
// alias b. Errors wrap ErrBadState and say what is wrong.
func Decode(b []byte) ([]Section, error) {
	if len(b) < len(Magic) {
		return nil, bad("%d bytes, truncated before the header ends", len(b))
	}
	if string(b[:len(Magic)]) != Magic {
		return nil, bad("bad magic %q: not a Ferry VM state blob", b[:len(Magic)])
	}
	if len(b) < headerSize+trailerSize {
		return nil, bad("%d bytes, truncated before the header ends", len(b))
	}
	switch v := binary.LittleEndian.Uint16(b[8:]); {
	case v == 0:
		return nil, bad("version 0 is invalid")
	case v > Version:
		return nil, bad("version %d is newer than this build reads (%d): upgrade the destination VMM", v, Version)
	case v < MinVersion:
		return nil, bad("version %d is no longer read by this build (it reads %d to %d)", v, MinVersion, Version)
	}
	if len(b) > MaxSize {
		return nil, bad("%d bytes, more than the %d a state blob may have", len(b), MaxSize)
	}
	body := b[:len(b)-trailerSize]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(body):]); got != want {
		return nil, bad("CRC-32C %#08x, the blob says %#08x: corrupted or truncated", got, want)
	}
	if f := binary.LittleEndian.Uint16(b[10:]); f != 0 {
		return nil, bad("header flags %#x; version %d defines none", f, Version)
	}
	count := binary.LittleEndian.Uint32(b[12:])
	if count > MaxSections {
		return nil, bad("%d sections, at most %d", count, MaxSections)
	}
	return decodeSections(body[headerSize:], count)
}

func decodeSections(rest []byte, count uint32) ([]Section, error) {
	out := make([]Section, 0, min(count, uint32(len(rest)/sectionHead)))
	for i := uint32(0); i < count; i++ {
		if len(rest) < sectionHead {
			return nil, bad("section %d of %d: header truncated (%d bytes left)", i, count, len(rest))
		}
		typ := SectionType(binary.LittleEndian.Uint16(rest))
		flags := binary.LittleEndian.Uint16(rest[2:])
		id := binary.LittleEndian.Uint32(rest[4:])
		n := binary.LittleEndian.Uint32(rest[8:])
		rest = rest[sectionHead:]
		switch {
		case typ == 0 || typ > maxSectionType:
			return nil, bad("section %d: unknown type %d in version %d", i, uint16(typ), Version)
		case flags != 0:
			return nil, bad("section %d (%s): flags %#x; version %d defines none", i, typ, flags, Version)
		case uint64(n) > uint64(len(rest)):
			return nil, bad("section %d (%s %d): %d bytes, only %d left", i, typ, id, n, len(rest))
		}
		out = append(out, Section{Type: typ, ID: id, Data: rest[:n:n]})
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, bad("%d bytes after the last of %d sections", len(rest), count)
	}
	return out, nil
}
