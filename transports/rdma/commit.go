package rdma

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// A batch ends with a COMMIT, sent on the fabric endpoint after the
// batch's writes (so, with FI_ORDER_SAW, delivered after them; without
// it, sent only once every write completed with FI_DELIVERY_COMPLETE):
//
//	magic "FRYC" | version u32 | seq u64 | zero frames u64 | data pages u64 | RUNS frames u64
//
// The destination answers ACK seq on the control channel once the COMMIT
// arrived and it applied the batch's zero frames and took its RUNS
// frames (both sent on the control channel, each tagged with seq). RUNS
// name the data runs the batch wrote, so that Landed can report them.
const (
	commitMagic   = "FRYC"
	commitVersion = 2
	commitSize    = 40
)

// A MARK has the COMMIT's layout with magic "FRYM": posted on the same
// endpoint after the writes of the batch so far (FI_ORDER_SAW), it says
// that the data runs of the batch's first runs RUNS frames are in guest
// RAM, so Landed can report them before the batch's Flush; zeros and
// pages are 0. The destination answers each MARK with a MARKED frame on
// the control channel (a MSG with the batch's seq and kind markedKind),
// which says its receive buffer was posted again; the source keeps at
// most maxMarks MARKs unanswered (SendPages waits for a MARKED rather
// than leave its pages without a MARK). Without FI_ORDER_SAW there are
// no MARKs.
const (
	markMagic = "FRYM"
	maxMarks  = recvSlots - 2 // one buffer stays free for the COMMIT
)

type commit struct {
	seq, zeros, pages, runs uint64
	mark                    bool
}

func (c commit) put(b []byte) {
	copy(b, commitMagic)
	if c.mark {
		copy(b, markMagic)
	}
	binary.BigEndian.PutUint32(b[4:], commitVersion)
	binary.BigEndian.PutUint64(b[8:], c.seq)
	binary.BigEndian.PutUint64(b[16:], c.zeros)
	binary.BigEndian.PutUint64(b[24:], c.pages)
	binary.BigEndian.PutUint64(b[32:], c.runs)
}

func parseCommit(b []byte) (commit, error) {
	if len(b) != commitSize || (string(b[:4]) != commitMagic && string(b[:4]) != markMagic) || binary.BigEndian.Uint32(b[4:]) != commitVersion {
		return commit{}, fmt.Errorf("%w: malformed COMMIT (%d bytes, %x)", transport.ErrProtocol, len(b), b[:min(len(b), 8)])
	}
	return commit{seq: binary.BigEndian.Uint64(b[8:]), zeros: binary.BigEndian.Uint64(b[16:]),
		pages: binary.BigEndian.Uint64(b[24:]), runs: binary.BigEndian.Uint64(b[32:]), mark: string(b[:4]) == markMagic}, nil
}

// A RUNS frame is a wire MSG frame on the control channel whose seq is
// the batch number (engine messages always carry seq 0) and whose kind
// is runsKind; its payload lists data runs of that batch:
// n × (first u64, count u32).
const (
	runsKind     = 1
	markedKind   = 2 // MARKED: the answer to a MARK (no payload)
	progressKind = 3 // PROGRESS: the batch's data pages written so far, as far as RUNS named them (progress.go; setup version 5; 6)
	runSize      = 12
	maxRunsSize  = 64 << 10 // payload bytes per RUNS frame
)

// appendRunsHeader writes the header of a RUNS frame of batch seq with
// n payload bytes.
func appendRunsHeader(b []byte, seq uint64, n int) []byte {
	return appendInternal(b, seq, runsKind, n)
}

// appendInternal writes the header of a transport-internal MSG frame
// (seq != 0) of kind with n payload bytes.
func appendInternal(b []byte, seq uint64, kind uint32, n int) []byte {
	var h [wire.HeaderSize + 4]byte
	wire.Header{Type: wire.TypeMsg, Length: uint32(4 + n), Seq: seq}.Put(h[:])
	binary.BigEndian.PutUint32(h[wire.HeaderSize:], kind)
	return append(b, h[:]...)
}

// parseRuns decodes a RUNS payload, each run checked against pages.
func parseRuns(f wire.Frame, pages uint64, out []transport.PageRun) ([]transport.PageRun, uint64, error) {
	b := f.Payload
	if f.Kind != runsKind || len(b)%runSize != 0 || len(b) == 0 {
		return out, 0, fmt.Errorf("%w: RUNS frame of kind %d with %d bytes", transport.ErrProtocol, f.Kind, len(b))
	}
	var n uint64
	for ; len(b) > 0; b = b[runSize:] {
		r := transport.PageRun{First: binary.BigEndian.Uint64(b), Count: uint64(binary.BigEndian.Uint32(b[8:])), Kind: transport.KindData}
		if err := r.Check(pages); err != nil {
			return out, 0, fmt.Errorf("%w: RUNS of batch %d: %w", transport.ErrProtocol, f.Seq, err)
		}
		out = append(out, r)
		n += r.Count
	}
	return out, n, nil
}

// An urgent COMMIT (UCOMMIT) goes on the urgent fabric endpoint after the
// urgent writes it covers (FI_ORDER_SAW, or after their completion with
// FI_DELIVERY_COMPLETE) and lists, in queue order, the runs it finishes:
//
//	magic "FRYU" | version u32 | useq u64 | n u32 | rsvd u32 | n × (first u64, count u32, kind u32)
//
// Data runs are in guest RAM when it arrives; zero runs the destination
// applies itself. It answers ACK useq on the urgent channel. No page is
// listed twice in one (postUrgent), so its runs name at most guest RAM's
// pages, which the destination checks (ucommitted).
const (
	ucommitMagic   = "FRYU"
	ucommitVersion = 1
	ucommitHeader  = 24
	urunSize       = 16
	uslotSize      = 4096
	maxURuns       = (uslotSize - ucommitHeader) / urunSize
)

func putUCommit(b []byte, useq uint64, runs []transport.PageRun) int {
	copy(b, ucommitMagic)
	binary.BigEndian.PutUint32(b[4:], ucommitVersion)
	binary.BigEndian.PutUint64(b[8:], useq)
	binary.BigEndian.PutUint32(b[16:], uint32(len(runs)))
	binary.BigEndian.PutUint32(b[20:], 0)
	o := ucommitHeader
	for _, r := range runs {
		binary.BigEndian.PutUint64(b[o:], r.First)
		binary.BigEndian.PutUint32(b[o+8:], uint32(r.Count))
		binary.BigEndian.PutUint32(b[o+12:], uint32(r.Kind))
		o += urunSize
	}
	return o
}

// parseUCommit decodes an urgent COMMIT, each run checked against pages.
func parseUCommit(b []byte, pages uint64, out []transport.PageRun) (uint64, []transport.PageRun, error) {
	if len(b) < ucommitHeader || string(b[:4]) != ucommitMagic || binary.BigEndian.Uint32(b[4:]) != ucommitVersion {
		return 0, out, fmt.Errorf("%w: malformed urgent COMMIT (%d bytes, %x)", transport.ErrProtocol, len(b), b[:min(len(b), 8)])
	}
	useq, n := binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint32(b[16:])
	if n == 0 || n > maxURuns || len(b) != ucommitHeader+int(n)*urunSize || binary.BigEndian.Uint32(b[20:]) != 0 {
		return 0, out, fmt.Errorf("%w: urgent COMMIT %d of %d runs in %d bytes", transport.ErrProtocol, useq, n, len(b))
	}
	for o := ucommitHeader; o < len(b); o += urunSize {
		r := transport.PageRun{First: binary.BigEndian.Uint64(b[o:]), Count: uint64(binary.BigEndian.Uint32(b[o+8:])),
			Kind: transport.Kind(binary.BigEndian.Uint32(b[o+12:]))}
		if err := r.Check(pages); err != nil {
			return 0, out, fmt.Errorf("%w: urgent COMMIT %d: %w", transport.ErrProtocol, useq, err)
		}
		out = append(out, r)
	}
	return useq, out, nil
}
