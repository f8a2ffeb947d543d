package rdma

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
)

// A batch ends with a COMMIT, sent on the fabric endpoint after the
// batch's writes (so, with FI_ORDER_SAW, delivered after them; without
// it, sent only once every write completed with FI_DELIVERY_COMPLETE):
//
//	magic "FRYC" | version u32 | seq u64 | zero frames u64 | data pages u64
//
// The destination answers ACK seq on the control channel once the COMMIT
// arrived and it applied the batch's zero frames (sent on the control
// channel, each tagged with seq).
const (
	commitMagic   = "FRYC"
	commitVersion = 1
	commitSize    = 32
)

type commit struct {
	seq, zeros, pages uint64
}

func (c commit) put(b []byte) {
	copy(b, commitMagic)
	binary.BigEndian.PutUint32(b[4:], commitVersion)
	binary.BigEndian.PutUint64(b[8:], c.seq)
	binary.BigEndian.PutUint64(b[16:], c.zeros)
	binary.BigEndian.PutUint64(b[24:], c.pages)
}

func parseCommit(b []byte) (commit, error) {
	if len(b) != commitSize || string(b[:4]) != commitMagic || binary.BigEndian.Uint32(b[4:]) != commitVersion {
		return commit{}, fmt.Errorf("%w: malformed COMMIT (%d bytes, %x)", transport.ErrProtocol, len(b), b[:min(len(b), 8)])
	}
	return commit{seq: binary.BigEndian.Uint64(b[8:]), zeros: binary.BigEndian.Uint64(b[16:]), pages: binary.BigEndian.Uint64(b[24:])}, nil
}
