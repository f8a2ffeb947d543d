package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework"
)

// protocolVersion is the engine protocol; HELLO carries it. Version 2
// added RUNNING: a version-1 source would take the destination's answer
// to COMMIT for nothing, so both sides must speak the same version (a
// mismatch is refused in the handshake, before any page moves). The rule
// and the golden tests: docs/ARCHITECTURE.md#versions.
const protocolVersion = 2

// Limits the destination applies to what the source says.
const (
	maxRegions    = 64
	maxStateBytes = 64 << 20
	stateChunk    = 512 << 10
)

var errMalformed = errors.New("malformed engine message")

// hello is the first message: who we are and what RAM we move.
type hello struct {
	Version uint32
	Pages   uint64
	Layout  []regionDesc
}

type regionDesc struct{ GPA, Size uint64 }

func encodeHello(l framework.Layout) []byte {
	b := binary.LittleEndian.AppendUint32(nil, protocolVersion)
	b = binary.LittleEndian.AppendUint64(b, l.Pages())
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l)))
	for _, r := range l {
		b = binary.LittleEndian.AppendUint64(b, r.GPA)
		b = binary.LittleEndian.AppendUint64(b, r.Size)
	}
	return b
}

func decodeHello(b []byte) (hello, error) {
	var h hello
	if len(b) < 16 {
		return h, fmt.Errorf("%w: HELLO of %d bytes", errMalformed, len(b))
	}
	h.Version = binary.LittleEndian.Uint32(b)
	h.Pages = binary.LittleEndian.Uint64(b[4:])
	n := binary.LittleEndian.Uint32(b[12:])
	if h.Version != protocolVersion {
		return h, fmt.Errorf("source speaks engine protocol %d, this destination %d: both VMMs must speak the same one "+
			"(docs/ARCHITECTURE.md#versions); upgrade the older side", h.Version, protocolVersion)
	}
	if n > maxRegions || uint64(len(b)) != 16+16*uint64(n) {
		return h, fmt.Errorf("%w: HELLO with %d regions in %d bytes", errMalformed, n, len(b))
	}
	for i := uint32(0); i < n; i++ {
		o := 16 + 16*i
		h.Layout = append(h.Layout, regionDesc{binary.LittleEndian.Uint64(b[o:]), binary.LittleEndian.Uint64(b[o+8:])})
	}
	return h, nil
}

// layout turns a HELLO's regions into a Layout for comparison.
func (h hello) layout() framework.Layout {
	l := make(framework.Layout, len(h.Layout))
	for i, r := range h.Layout {
		l[i] = framework.Region{GPA: r.GPA, Size: r.Size}
	}
	return l
}

// stateChunkHeader precedes each STATE chunk: total length and offset.
func encodeStateChunk(total, off uint64, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, total)
	b = binary.LittleEndian.AppendUint64(b, off)
	return append(b, data...)
}

func decodeStateChunk(b []byte) (total, off uint64, data []byte, err error) {
	if len(b) < 16 {
		return 0, 0, nil, fmt.Errorf("%w: STATE chunk of %d bytes", errMalformed, len(b))
	}
	total, off, data = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), b[16:]
	if total > maxStateBytes {
		return 0, 0, nil, fmt.Errorf("state blob of %d bytes is over the %d-byte limit", total, maxStateBytes)
	}
	if off > total || uint64(len(data)) > total-off {
		return 0, 0, nil, fmt.Errorf("%w: STATE chunk %d+%d beyond %d", errMalformed, off, len(data), total)
	}
	return total, off, data, nil
}
