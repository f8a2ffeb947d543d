package transport

import (
	"fmt"
	"time"

	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// Conversions between the Go types and their protobuf messages. Enum
// values are the same numbers on both sides and pass through unchanged,
// invalid ones included: the implementation (or the job parser, for a
// schema) rejects them, exactly as it would in process. Schemas and
// configuration values convert in framework/internal/schemaconv, shared
// with hint providers.

func runsToProto(runs []PageRun) []*pb.PageRun {
	out := make([]*pb.PageRun, len(runs))
	for i, r := range runs {
		out[i] = &pb.PageRun{First: r.First, Count: r.Count, Kind: pb.PageKind(r.Kind)}
	}
	return out
}

func runsFromProto(runs []*pb.PageRun) []PageRun {
	out := make([]PageRun, len(runs))
	for i, r := range runs {
		out[i] = PageRun{First: r.GetFirst(), Count: r.GetCount(), Kind: Kind(r.GetKind())}
	}
	return out
}

func statsToProto(s Stats) *pb.StatsResponse {
	return &pb.StatsResponse{BytesWire: s.BytesWire, PagesData: s.PagesData, PagesZero: s.PagesZero, Compressed: s.Compressed,
		RttNs: uint64(max(s.RTT, 0))}
}

// statsFromProto reads a plugin's Stats; a round trip of maxRTT or more
// (none is that long; a larger number would not fit a Duration) reads as
// none measured.
func statsFromProto(s *pb.StatsResponse) Stats {
	st := Stats{BytesWire: s.GetBytesWire(), PagesData: s.GetPagesData(), PagesZero: s.GetPagesZero(), Compressed: s.GetCompressed()}
	if ns := s.GetRttNs(); ns < uint64(maxRTT) {
		st.RTT = time.Duration(ns)
	}
	return st
}

// maxRTT bounds the round trip a plugin's Stats may report.
const maxRTT = time.Hour

func credsToProto(c Credentials) *pb.Credentials {
	return &pb.Credentials{Certificate: c.Certificate, Key: c.Key, PeerRoots: c.PeerRoots, PinPeer: c.PinPeer, Plaintext: c.Plaintext}
}

func credsFromProto(c *pb.Credentials) Credentials {
	return Credentials{Certificate: c.GetCertificate(), Key: c.GetKey(), PeerRoots: c.GetPeerRoots(), PinPeer: c.GetPinPeer(),
		Plaintext: c.GetPlaintext()}
}

// tagToProto is OpenRequest.Tag on the wire: empty for the zero Tag.
func tagToProto(t Tag) []byte {
	if t.IsZero() {
		return nil
	}
	return t[:]
}

// tagFromProto checks a migration_tag: empty (the zero Tag) or TagSize
// bytes; anything else is ErrBadConfig.
func tagFromProto(b []byte) (Tag, error) {
	var t Tag
	switch len(b) {
	case 0:
	case TagSize:
		copy(t[:], b)
	default:
		return t, fmt.Errorf("%w: migration tag of %d bytes, want %d or none", ErrBadConfig, len(b), TagSize)
	}
	return t, nil
}
