package rdma

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// The setup frames travel inside the authenticated control channel,
// before its wire frames:
//
//	source                                   destination
//	HELLO  tag, layout            ────────►  tag check first: another migration's
//	                              ◄────────  OTHER (empty), close; wait on
//	                                         layout check (REFUSE reason)
//	                              ◄────────  OFFER  nonces, fabric ports
//	fi_connect(param = nonce)     ════════►  bulk endpoint: only that nonce
//	fi_connect(param = unonce)    ════════►  urgent endpoint: only that one
//	                              ◄────────  KEYS   base and key per region,
//	                                                for each endpoint
//	second control connection (urgent channel), authenticated the same way:
//	URGENT unonce, tag            ────────►  only with that nonce and the session's tag
//	                              ◄────────  URGENT (accepted)
//	READY (empty)                 ────────►  the source's Open succeeded: the
//	                                         destination's Open returns
//
// Each frame: magic "FRDM", version u16, type u16, length u32, payload.
// Version 2 added the urgent endpoint and channel; version 3 the
// migration's tag in HELLO and URGENT, and OTHER (transport API 8);
// version 4 READY (still transport API 8), without which a destination
// could not tell a source's try that ended as its URGENT answer arrived
// from one that succeeded; version 5 the session's PROGRESS frames
// (progress.go: the source reports its completed writes, which a
// version-4 destination would take for a malformed RUNS frame);
// version 6 holds a PROGRESS to the pages of RUNS frames sent before
// it, and a batch to guest RAM's pages, both of which the destination
// checks (a version-5 source may report pages its RUNS name later). The
// version stands for the whole session's protocol, not only the setup
// frames: it must match exactly; a peer of
// another is answered in this one (a REFUSE its reader refuses naming
// both versions).
const (
	setupMagic   = "FRDM"
	setupVersion = 6
	setupHeader  = 12
	maxSetup     = 64 + 2*(4+wire.MaxRegions*16)
	nonceSize    = 16
	tagSize      = transport.TagSize
)

type setupType uint16

const (
	setupHello  setupType = 1
	setupOffer  setupType = 2
	setupKeys   setupType = 3
	setupRefuse setupType = 4
	setupUrgent setupType = 5
	// setupOther: the destination waits for another migration than the
	// HELLO's tag names (transport.Transport, "Migration tag").
	setupOther setupType = 6
	// setupReady: the source's last word, on the urgent channel: its
	// Open succeeded (version 4).
	setupReady setupType = 7
)

func writeSetup(w io.Writer, t setupType, payload []byte) error {
	b := make([]byte, setupHeader, setupHeader+len(payload))
	copy(b, setupMagic)
	binary.BigEndian.PutUint16(b[4:], setupVersion)
	binary.BigEndian.PutUint16(b[6:], uint16(t))
	binary.BigEndian.PutUint32(b[8:], uint32(len(payload)))
	_, err := w.Write(append(b, payload...))
	return err
}

// readSetup reads one setup frame of type want (or REFUSE or OTHER,
// returned as errors), checking magic, version and length before reading
// the payload.
func readSetup(r io.Reader, want setupType) ([]byte, error) {
	_, p, err := readSetupOf(r, want)
	return p, err
}

// readSetupOf is readSetup for a frame of any of the types want (at
// least one), and says which came.
func readSetupOf(r io.Reader, want ...setupType) (setupType, []byte, error) {
	var h [setupHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read %v: %w", setupTypes(want), err)
	}
	t, n := setupType(binary.BigEndian.Uint16(h[6:])), binary.BigEndian.Uint32(h[8:])
	switch {
	case string(h[:4]) != setupMagic:
		return 0, nil, fmt.Errorf("%w: setup frame magic %q (is the peer an rdma transport?)", transport.ErrProtocol, h[:4])
	case binary.BigEndian.Uint16(h[4:]) != setupVersion:
		return 0, nil, fmt.Errorf("%w: setup version %d, this side speaks %d: %w", transport.ErrProtocol, binary.BigEndian.Uint16(h[4:]),
			setupVersion, errSetupVersion)
	case n > maxSetup:
		return 0, nil, fmt.Errorf("%w: setup frame of %d bytes", transport.ErrProtocol, n)
	case !slices.Contains(want, t) && t != setupRefuse && t != setupOther:
		return 0, nil, fmt.Errorf("%w: setup frame type %d, want %v", transport.ErrProtocol, t, setupTypes(want))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("read %v: %w", setupTypes(want), err)
	}
	switch t {
	case setupRefuse:
		return 0, nil, fmt.Errorf("%w: %s: %w", ErrLayoutMismatch, p, transport.ErrClosed)
	case setupOther:
		return 0, nil, fmt.Errorf("%w: refused at %v", transport.ErrWrongMigration, setupTypes(want))
	}
	return t, p, nil
}

// setupTypes names the types a reader waits for: "HELLO or URGENT".
type setupTypes []setupType

func (ts setupTypes) String() string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, " or ")
}

// errSetupVersion marks a setup frame of another version: the peer runs
// another Ferry release's rdma transport (the version must match
// exactly; versions 4 and 5 came within transport API 8).
var errSetupVersion = errors.New("both sides need the rdma transport of the same Ferry release (upgrade the older side)")

func (t setupType) String() string {
	names := [...]string{"setup frame 0", "HELLO", "OFFER", "KEYS", "REFUSE", "URGENT", "OTHER", "READY"}
	if int(t) >= len(names) {
		return fmt.Sprintf("setup frame %d", t)
	}
	return names[t]
}

// appendHello is HELLO's payload: the migration's tag, then the layout.
func appendHello(tag transport.Tag, l []wire.Region) []byte {
	return appendLayout(append([]byte(nil), tag[:]...), l)
}

// helloTag splits HELLO's payload into the tag and the layout.
func helloTag(p []byte) (transport.Tag, []byte, error) {
	var tag transport.Tag
	if len(p) < tagSize {
		return tag, nil, fmt.Errorf("%w: HELLO of %d bytes", transport.ErrProtocol, len(p))
	}
	copy(tag[:], p)
	return tag, p[tagSize:], nil
}

func appendLayout(b []byte, l []wire.Region) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(l)))
	for _, r := range l {
		b = binary.BigEndian.AppendUint64(b, r.GPA)
		b = binary.BigEndian.AppendUint64(b, r.Size)
	}
	return b
}

func parseLayout(b []byte) ([]wire.Region, []byte, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated layout", transport.ErrProtocol)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if n > wire.MaxRegions || uint64(len(b)) < uint64(n)*16 {
		return nil, nil, fmt.Errorf("%w: layout of %d regions in %d bytes", transport.ErrProtocol, n, len(b))
	}
	l := make([]wire.Region, n)
	for i := range l {
		l[i] = wire.Region{GPA: binary.BigEndian.Uint64(b), Size: binary.BigEndian.Uint64(b[8:])}
		b = b[16:]
	}
	return l, b, nil
}

// ErrLayoutMismatch is the error of a session refused because the source
// and destination guest RAM layouts differ.
var ErrLayoutMismatch = errors.New("guest RAM layouts of source and destination differ")

func layoutErr(ours, theirs []wire.Region, we, they string) error {
	return fmt.Errorf("%w: the %s has %s, the %s has %s (start both VMs with the same memory size)",
		ErrLayoutMismatch, we, wire.FormatLayout(ours), they, wire.FormatLayout(theirs))
}

// offer is the destination's OFFER: the nonce the bulk fabric connection
// must carry and its listener's port, the same for the urgent fabric
// connection, whose nonce also admits the urgent control connection.
type offer struct {
	nonce, unonce [nonceSize]byte
	port, uport   uint16
	layout        []wire.Region
}

const offerFixed = 2*nonceSize + 4

func (o offer) append(b []byte) []byte {
	b = append(b, o.nonce[:]...)
	b = append(b, o.unonce[:]...)
	b = binary.BigEndian.AppendUint16(b, o.port)
	b = binary.BigEndian.AppendUint16(b, o.uport)
	return appendLayout(b, o.layout)
}

func parseOffer(b []byte) (offer, error) {
	var o offer
	if len(b) < offerFixed {
		return o, fmt.Errorf("%w: truncated OFFER", transport.ErrProtocol)
	}
	copy(o.nonce[:], b)
	copy(o.unonce[:], b[nonceSize:])
	o.port = binary.BigEndian.Uint16(b[2*nonceSize:])
	o.uport = binary.BigEndian.Uint16(b[2*nonceSize+2:])
	l, rest, err := parseLayout(b[offerFixed:])
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d bytes after OFFER", transport.ErrProtocol, len(rest))
	}
	o.layout = l
	return o, err
}

// appendKeys encodes each region's registration as the bulk endpoint
// addresses it, then as the urgent endpoint does (base address and key
// each). Both endpoints share one domain and one registration, so the
// keys are the same; the second set stays so that either side may be of
// the version before, which registered guest RAM once per endpoint.
func appendKeys(b []byte, regs []*region, virtAddr, uvirtAddr bool) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(regs)))
	for _, r := range regs {
		b = binary.BigEndian.AppendUint64(b, r.mr.Base(virtAddr))
		b = binary.BigEndian.AppendUint64(b, r.mr.Key())
	}
	for _, r := range regs {
		b = binary.BigEndian.AppendUint64(b, r.mr.Base(uvirtAddr))
		b = binary.BigEndian.AppendUint64(b, r.mr.Key())
	}
	return b
}

// parseKeys sets the peer's bases and keys on each region.
func parseKeys(b []byte, regs []*region) error {
	if len(b) != 4+32*len(regs) || binary.BigEndian.Uint32(b) != uint32(len(regs)) {
		return fmt.Errorf("%w: KEYS of %d bytes for %d regions", transport.ErrProtocol, len(b), len(regs))
	}
	b = b[4:]
	for _, r := range regs {
		r.rbase, r.rkey = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
		b = b[16:]
	}
	for _, r := range regs {
		r.urbase, r.urkey = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
		b = b[16:]
	}
	return nil
}

func sameLayout(a, b []wire.Region) bool { return slices.Equal(a, b) }
