package wire

import (
	"encoding/binary"
	"fmt"
)

// Magic opens every frame.
const Magic = "FRYW"

// Version is the frame format version. The rule
// (docs/ARCHITECTURE.md#versions): a decoder reads its own version and the
// previous one (MinVersion), a writer writes its own, and a destination
// answers a stream in the version the source opened it with. Version 2
// added the migration tag to HELLO (transport API 8); every other frame
// is the same in both.
const Version = 2

// MinVersion is the oldest version a decoder reads: Version's predecessor.
const MinVersion = Version - 1

// Sizes and limits. Every length read from the wire is checked against
// them before anything is allocated or read.
const (
	HeaderSize       = 20      // fixed frame header
	RunSize          = 16      // first u64, count u32, then cell u16 and every u16 (strided ZERO) or 0 u32
	PageSize         = 4096    // bytes per page
	MaxPagesPerFrame = 4096    // pages in one PAGES frame (16 MiB)
	MaxZeroPages     = 1 << 20 // pages in one ZERO frame (4 GiB)
	MaxStreams       = 64      // streams in one session
	MaxRegions       = 1024    // RAM regions in a HELLO
	MaxReason        = 1024    // bytes of a BYE or ABORT reason
	SessionSize      = 16      // bytes of a session id
	TagSize          = 16      // bytes of a migration tag: transport.TagSize
	MaxMessage       = 1 << 20 // bytes of a MSG payload after its kind: transport.MaxMessage
	helloFixedV1     = SessionSize + 12
	helloFixed       = SessionSize + TagSize + 12
	msgFixed         = 4
	abortFixed       = 4
	maxHello         = helloFixed + MaxRegions*16
	maxPagesPayload  = RunSize + MaxPagesPerFrame*PageSize
	maxMsgPayload    = msgFixed + MaxMessage
	// MaxPayload bounds the payload of any frame.
	MaxPayload = maxPagesPayload
)

// Type is a frame type. 0 is invalid.
type Type uint8

// Frame types.
const (
	TypeHello Type = 1 // opens a stream (source) or accepts it (destination)
	TypePages Type = 2 // page contents
	TypeZero  Type = 3 // pages that are all zero
	TypeAck   Type = 4 // batches up to Seq are in guest RAM
	TypeMsg   Type = 5 // an engine message
	TypeBye   Type = 6 // normal end of the session
	TypeAbort Type = 7 // the session failed; code and reason
)

var typeNames = [...]string{"invalid", "HELLO", "PAGES", "ZERO", "ACK", "MSG", "BYE", "ABORT"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Flags qualify a frame. PAGES defines FlagCompressed, HELLO FlagUrgent
// and ZERO FlagStrided; every other bit must be 0.
type Flags uint8

const (
	// FlagCompressed marks a PAGES payload that is one lz4 block.
	FlagCompressed Flags = 1 << 0
	// FlagUrgent marks the HELLO of a session's urgent stream (added with
	// transport API 3; a reader without it refuses the frame as
	// malformed, and the secure channel's go-ahead keeps such peers apart
	// before any frame).
	FlagUrgent Flags = 1 << 1
	// FlagStrided marks a ZERO frame whose run is strided (Run.Cell,
	// Run.Every). A Decoder refuses it unless its reader said which
	// stride it takes (AcceptStrided), so a reader that would apply the
	// run as contiguous never sees one. Added within version 1, as
	// FlagUrgent was: a reader without it refuses the frame as malformed
	// (docs/ARCHITECTURE.md, "Wire frames").
	FlagStrided Flags = 1 << 2
)

// Header is the fixed part of a frame.
type Header struct {
	// Version is the frame's version (MinVersion..Version); Put writes
	// Version for 0, and the Append functions leave it 0.
	Version uint8
	Type    Type
	Flags   Flags
	Length  uint32 // payload bytes after the header
	Seq     uint64 // batch number (PAGES, ZERO, ACK), else 0
}

// Put writes h into b[:HeaderSize].
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	copy(b, Magic)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b[4], b[5], b[6], b[7] = v, byte(h.Type), byte(h.Flags), 0
	binary.BigEndian.PutUint32(b[8:], h.Length)
	binary.BigEndian.PutUint64(b[12:], h.Seq)
}

// ParseHeader decodes and checks a header: magic, version, type, flags,
// the reserved byte, and the payload length against the bounds of the type.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header of %d bytes", ErrTruncated, len(b))
	}
	if string(b[:4]) != Magic {
		return Header{}, &MagicError{Got: [4]byte(b[:4])}
	}
	if b[4] < MinVersion || b[4] > Version {
		return Header{}, fmt.Errorf("%w %d (this side speaks %d and reads %d)", ErrBadVersion, b[4], Version, MinVersion)
	}
	h := Header{Version: b[4], Type: Type(b[5]), Flags: Flags(b[6]),
		Length: binary.BigEndian.Uint32(b[8:]), Seq: binary.BigEndian.Uint64(b[12:])}
	if h.Type == 0 || int(h.Type) >= len(typeNames) {
		return Header{}, fmt.Errorf("%w %d", ErrBadType, b[5])
	}
	if b[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved header byte is %#x", ErrMalformed, b[7])
	}
	if h.Flags != 0 && !(h.Type == TypePages && h.Flags&^FlagCompressed == 0 || h.Type == TypeHello && h.Flags == FlagUrgent ||
		h.Type == TypeZero && h.Flags == FlagStrided) {
		return Header{}, fmt.Errorf("%w: flags %#x on %v", ErrMalformed, uint8(h.Flags), h.Type)
	}
	lo, hi := lengthBounds(h.Type)
	if h.Type == TypeHello && h.Version == 1 {
		lo, hi = helloFixedV1, helloFixedV1+MaxRegions*16 // no tag
	}
	if h.Length < lo || h.Length > hi {
		return Header{}, fmt.Errorf("%w: %v payload of %d bytes (allowed %d..%d)", ErrTooLong, h.Type, h.Length, lo, hi)
	}
	return h, nil
}

// lengthBounds is the payload length range each type allows.
func lengthBounds(t Type) (lo, hi uint32) {
	switch t {
	case TypeHello:
		return helloFixed, maxHello
	case TypePages:
		return RunSize + 1, maxPagesPayload
	case TypeZero:
		return RunSize, RunSize
	case TypeAck:
		return 0, 0
	case TypeMsg:
		return msgFixed, maxMsgPayload
	case TypeBye:
		return 0, MaxReason
	case TypeAbort:
		return abortFixed, abortFixed + MaxReason
	}
	return 1, 0
}

// SetVersion rewrites the version of the frame whose header starts b, so
// that a destination answers a stream in the version its source opened
// it with. Only frames laid out the same in both versions may be
// rewritten: every type but HELLO (AppendHelloIn writes that one).
func SetVersion(b []byte, v uint8) error {
	if len(b) < HeaderSize || string(b[:4]) != Magic || Type(b[5]) == TypeHello || v < MinVersion || v > Version {
		return fmt.Errorf("%w: cannot write this frame in version %d", ErrMalformed, v)
	}
	b[4] = v
	return nil
}
