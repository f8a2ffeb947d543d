package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Region is one RAM region as HELLO describes it: guest address and size.
type Region struct {
	GPA  uint64
	Size uint64
}

// Hello opens (source) or accepts (destination) one stream of a session.
type Hello struct {
	Session [SessionSize]byte // random, the same on every stream of a session
	// Tag is the migration the session belongs to (transport.Tag; zero:
	// none named), the same on every stream of a session. Version 2: a
	// version-1 HELLO carries none and decodes with the zero Tag.
	Tag      [TagSize]byte
	Stream   uint16   // this stream's index, < Streams
	Streams  uint16   // streams in the session, 1..MaxStreams
	PageSize uint32   // bytes per page of the sender
	RAM      []Region // the sender's guest RAM layout, in page-index order
	// Urgent marks the session's urgent stream (header flag FlagUrgent):
	// beside the Streams bulk streams, with Stream 0.
	Urgent bool
}

// FormatLayout renders a layout for error messages: "[0x0+0x8000000 0x100000000+0x40000000]".
func FormatLayout(rs []Region) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%#x+%#x", r.GPA, r.Size)
	}
	b.WriteByte(']')
	return b.String()
}

// AppendHello appends a HELLO frame of this Version.
func AppendHello(dst []byte, h Hello) ([]byte, error) {
	return AppendHelloIn(dst, h, Version)
}

// AppendHelloIn appends a HELLO frame of version v (MinVersion..Version):
// a destination answers a source in the version it spoke. Version 1
// carries no tag: h.Tag must be zero.
func AppendHelloIn(dst []byte, h Hello, v uint8) ([]byte, error) {
	if err := h.check(); err != nil {
		return dst, err
	}
	if v < MinVersion || v > Version || v == 1 && h.Tag != [TagSize]byte{} {
		return dst, fmt.Errorf("%w: HELLO of version %d with tag %x", ErrMalformed, v, h.Tag[:4])
	}
	n := helloFixed + 16*len(h.RAM)
	if v == 1 {
		n = helloFixedV1 + 16*len(h.RAM)
	}
	var fl Flags
	if h.Urgent {
		fl = FlagUrgent
	}
	dst = appendHeader(dst, Header{Version: v, Type: TypeHello, Flags: fl, Length: uint32(n)})
	dst = append(dst, h.Session[:]...)
	if v >= 2 {
		dst = append(dst, h.Tag[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, h.Stream)
	dst = binary.BigEndian.AppendUint16(dst, h.Streams)
	dst = binary.BigEndian.AppendUint32(dst, h.PageSize)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(h.RAM)))
	for _, r := range h.RAM {
		dst = binary.BigEndian.AppendUint64(dst, r.GPA)
		dst = binary.BigEndian.AppendUint64(dst, r.Size)
	}
	return dst, nil
}

func (h Hello) check() error {
	if h.Streams == 0 || h.Streams > MaxStreams || h.Stream >= h.Streams || h.Urgent && h.Stream != 0 {
		return fmt.Errorf("%w: HELLO for stream %d of %d (at most %d streams)", ErrMalformed, h.Stream, h.Streams, MaxStreams)
	}
	if len(h.RAM) > MaxRegions {
		return fmt.Errorf("%w: HELLO with %d RAM regions (at most %d)", ErrTooLong, len(h.RAM), MaxRegions)
	}
	return nil
}

// parseHello decodes a HELLO payload of version v whose length
// ParseHeader checked; urgent is the header's FlagUrgent, checked with
// the rest (an urgent stream is stream 0), so that a reader takes only
// what AppendHelloIn writes.
func parseHello(b []byte, v uint8, urgent bool) (Hello, error) {
	h := Hello{Urgent: urgent}
	copy(h.Session[:], b)
	b = b[SessionSize:]
	if v >= 2 {
		copy(h.Tag[:], b)
		b = b[TagSize:]
	}
	h.Stream = binary.BigEndian.Uint16(b)
	h.Streams = binary.BigEndian.Uint16(b[2:])
	h.PageSize = binary.BigEndian.Uint32(b[4:])
	n := binary.BigEndian.Uint32(b[8:])
	b = b[12:]
	if uint64(n)*16 != uint64(len(b)) {
		return Hello{}, fmt.Errorf("%w: HELLO says %d RAM regions but carries %d bytes of them", ErrMalformed, n, len(b))
	}
	h.RAM = make([]Region, n)
	for i := range h.RAM {
		h.RAM[i] = Region{GPA: binary.BigEndian.Uint64(b[16*i:]), Size: binary.BigEndian.Uint64(b[16*i+8:])}
	}
	return h, h.check()
}
