package vmtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The state blob, what SaveState returns and LoadState accepts:
//
//	0      4        6        8      16       20             20+16n
//	┌──────┬────────┬────────┬──────┬────────┬──────────────┬───────┐
//	│"FVMT"│version │ 0      │ seq  │ n free │ n × (first,  │ CRC32 │
//	│      │ u16 =1 │ u16    │ u64  │ u32    │  count) u64  │ IEEE  │
//	└──────┴────────┴────────┴──────┴────────┴──────────────┴───────┘
//
// Little-endian; the CRC covers every byte before it. The free runs are
// the guest's free pages (page indices), so the destination knows which
// pages it need not check.

const (
	stateMagic   = "FVMT"
	stateVersion = 1
	stateHeader  = 20
)

// ErrBadState is the class of a state blob LoadState rejects.
var ErrBadState = errors.New("vmtest: bad state blob")

// vmState is what the blob carries.
type vmState struct {
	seq  uint64
	free [][2]uint64 // runs of free pages: first, count
}

func encodeState(s vmState) []byte {
	b := make([]byte, stateHeader, stateHeader+16*len(s.free)+4)
	copy(b, stateMagic)
	binary.LittleEndian.PutUint16(b[4:], stateVersion)
	binary.LittleEndian.PutUint64(b[8:], s.seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(s.free)))
	for _, r := range s.free {
		b = binary.LittleEndian.AppendUint64(b, r[0])
		b = binary.LittleEndian.AppendUint64(b, r[1])
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// decodeState checks and decodes a blob for a VM of pages pages.
func decodeState(b []byte, pages uint64) (vmState, error) {
	var s vmState
	if len(b) < stateHeader+4 {
		return s, fmt.Errorf("%w: %d bytes, too short", ErrBadState, len(b))
	}
	if string(b[:4]) != stateMagic {
		return s, fmt.Errorf("%w: magic %q", ErrBadState, b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != stateVersion {
		return s, fmt.Errorf("%w: version %d, this VM reads version %d", ErrBadState, v, stateVersion)
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return s, fmt.Errorf("%w: CRC mismatch", ErrBadState)
	}
	n := uint64(binary.LittleEndian.Uint32(b[16:]))
	if uint64(len(body)-stateHeader) != 16*n {
		return s, fmt.Errorf("%w: %d free runs in %d bytes", ErrBadState, n, len(body)-stateHeader)
	}
	s.seq = binary.LittleEndian.Uint64(b[8:])
	for off := stateHeader; off < len(body); off += 16 {
		first, count := binary.LittleEndian.Uint64(body[off:]), binary.LittleEndian.Uint64(body[off+8:])
		if count == 0 || first >= pages || count > pages-first {
			return s, fmt.Errorf("%w: free run %d+%d outside %d pages", ErrBadState, first, count, pages)
		}
		s.free = append(s.free, [2]uint64{first, count})
	}
	return s, nil
}

// SaveState implements framework.Source: the write sequence and the free
// pages. The VM must be paused.
func (v *VM) SaveState(context.Context) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.opt.FailSave != nil {
		return nil, v.opt.FailSave
	}
	if v.state != StatePaused {
		return nil, fmt.Errorf("save state: the VM is %s, not paused", v.state)
	}
	s := vmState{seq: v.seq}
	v.free.Runs(func(first, n uint64) bool {
		s.free = append(s.free, [2]uint64{first, n})
		return true
	})
	v.count.Saves++
	return encodeState(s), nil
}

// LoadState implements framework.Target: it rejects a blob with a wrong
// magic, version, CRC or length (errors wrap ErrBadState); the VM is then
// loaded and paused until Resume.
func (v *VM) LoadState(_ context.Context, b []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.opt.FailLoad != nil {
		return v.opt.FailLoad
	}
	if v.state != StateIncoming {
		return fmt.Errorf("load state: the VM is %s, not incoming", v.state)
	}
	s, err := decodeState(b, v.layout.Pages())
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	v.seq = s.seq
	v.own = nil // its RAM holds the source's writes now
	v.free.ClearAll()
	for _, r := range s.free {
		v.free.SetRange(r[0], r[1])
	}
	v.state = StatePaused
	v.count.Loads++
	return nil
}
