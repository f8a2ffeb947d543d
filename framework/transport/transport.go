package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/schema"
)

// APIVersion is the transport plugin protocol version (go-plugin's
// ProtocolVersion); host and plugin must agree. 2: Open carries
// Credentials, which a version-1 plugin would ignore (and run the session
// unauthenticated), so the host refuses it. 3: the urgent path
// (SendUrgent, RecvUrgent, SendPagesUrgent, Landed), which a version-2
// plugin does not serve (post-copy's page requests would wait forever).
// 4: the urgent path goes over the urgent channel (channel.go), which a
// version-3 plugin would not serve. 5: the urgent channel carries
// Answer (version 2 of its frames), which a version-4 plugin would take
// for a broken channel. 6: Credentials.PinPeer, which a version-5 plugin
// would ignore (and take the issuers in a pinned peer's chain file for
// trusted CAs). 7: a plugin hands its listening sockets to the host
// (fHold on the urgent channel, version 3; Listen), which a version-6
// host would take for a broken channel. 8: OpenRequest.Tag, which a
// version-7 plugin would ignore: its destination would take another
// migration's source that holds trusted credentials and write that
// source's pages into guest RAM (a running guest's, in post-copy) before
// the engine's own check of the tag. The rule and its tests:
// docs/ARCHITECTURE.md#versions.
const APIVersion = 8

// MaxLanded bounds the runs one Landed call returns; more wait for the
// next call.
const MaxLanded = 1 << 15

// MaxMessage bounds a message payload.
const MaxMessage = 1 << 20

// Role is which end of a migration a transport serves. 0 is invalid.
type Role int

const (
	RoleSend    Role = 1 // source: dials, sends pages
	RoleReceive Role = 2 // destination: listens, writes pages
)

func (r Role) String() string {
	switch r {
	case RoleSend:
		return "send"
	case RoleReceive:
		return "receive"
	}
	return "invalid"
}

// Info describes a transport implementation.
type Info struct {
	Name    string // as used in the job file: transport "<name>" { ... }
	Version string
}

// RAMRegion is one region of guest RAM as a transport sees it: the
// plugin maps File (an index into OpenRequest.Files) at Offset.
type RAMRegion struct {
	GPA    uint64
	Size   uint64
	File   int
	Offset uint64
}

// TagSize is the length of a migration tag.
const TagSize = 16

// Tag names the migration a session belongs to: the engine's migration
// tag (engine protocol 7), random per migration or derived from its ID.
// It is not a secret (the credentials authenticate); it tells apart
// migrations whose sources hold the same trusted credentials. The zero
// Tag means "not known yet".
type Tag [TagSize]byte

// IsZero reports whether t is the zero Tag.
func (t Tag) IsZero() bool { return t == Tag{} }

// OpenRequest starts one migration session.
type OpenRequest struct {
	Role   Role
	Config schema.Config
	// RAM is the guest memory layout, in page-index order (framework.Layout).
	RAM []RAMRegion
	// Files back RAM: in process, the VMM's files; over gRPC the plugin
	// receives them at startup and the host sends only indices.
	Files []*os.File
	// Credentials authenticate the peer (and this side to it); every
	// session needs them (see Transport).
	Credentials Credentials
	// Tag is the migration this session belongs to; zero when not known
	// yet. RoleSend: the transport names it to the peer in its own
	// handshake, on every connection of the session, before anything
	// else the session carries. RoleReceive: when non-zero, a peer that
	// names another tag (or none) is refused as a peer without
	// credentials is; when zero, any authenticated peer is taken (see
	// Transport, "Migration tag").
	Tag Tag
}

// Kind says what a page run carries. 0 is invalid.
type Kind int

const (
	KindData Kind = 1 // page contents, read from guest RAM when sent
	KindZero Kind = 2 // pages that are all zero: the destination zeroes them
)

// PageRun is Count consecutive pages from page index First.
type PageRun struct {
	First uint64
	Count uint64
	Kind  Kind
}

// Message is a small, ordered, reliable message between the two engines.
type Message struct {
	Kind    uint32 // the engine's message type; 0 is invalid
	Payload []byte // at most MaxMessage bytes
}

// Stats counts a session's traffic.
type Stats struct {
	BytesWire  uint64 // bytes written to (send) or read from (receive) the network, framing included
	PagesData  uint64 // data pages sent or received
	PagesZero  uint64 // zero pages sent or received
	Compressed uint64 // data pages that went compressed
	// RTT is the link's round trip as the transport measures it, on a
	// sending session (tcp: the kernel's smoothed round trip of its
	// first connection; loopback: its last Flush's; rdma: the smallest
	// COMMIT or MARK round trip of its last batch acknowledged,
	// transports/rdma/rtt.go); 0 when it measures none (a plugin built
	// before it, a receiving session, an rdma session before its first
	// ACK). The engine asks it while the session is open.
	// The engine charges the smallest round trip it saw in the latest
	// live pass twice in its downtime estimate (engine.rttMeter); a
	// transport that reports one below its real round trip makes a
	// migration switch over too early.
	RTT time.Duration
}

// Transport moves pages and messages for one migration at a time.
//
// Concurrency: Open, SendPages, Flush and Close are called from one
// goroutine (the main one); SendMessage and RecvMessage may each be
// called from one other goroutine concurrently with those; Stats from any
// goroutine. The urgent path has three more lanes, each one goroutine at
// a time and each concurrent with every other lane: SendUrgent and
// SendPagesUrgent share one (the urgent sender), RecvUrgent has one, and
// Landed has one. Every call that blocks honours its context; Close
// (main lane) makes every call blocked in another lane return.
//
// The urgent path: SendUrgent, RecvUrgent, SendPagesUrgent and Landed
// carry post-copy's page requests and their answers. Nothing of the
// urgent path waits behind bulk data: not behind pages queued with
// SendPages (however many are queued or in flight), nor behind ordinary
// messages. (A transport that shares one connection between the paths,
// like loopback, may make an urgent frame wait for the one bulk frame
// being written and what the kernel already buffered, never for more;
// tcp gives the urgent path a connection of its own.) Its ordering
// rules:
//   - Urgent messages arrive in the order they were sent, each exactly
//     once; they have no order relative to ordinary messages or pages
//     (either may overtake the other).
//   - Urgent page runs are written in the order they were queued among
//     themselves; they may overtake bulk pages queued before them.
//   - Per page, the destination applies writes in the source's queue
//     order across both paths: when a page was queued in bulk (SendPages)
//     and then urgently (SendPagesUrgent) and the urgent copy lands
//     first, the earlier-queued bulk copy is dropped when it arrives (not
//     written, not reported by Landed); a bulk copy queued after the
//     urgent one is written after it (the later queueing wins, as it
//     would on one stream). So the page's final bytes are always those
//     of the copy queued last, and a page's writes never go backwards.
//     Data is read from the source's RAM when sent (after the call), so
//     the bytes are at least as new as the queueing. A SendPages call
//     that runs concurrently with SendPagesUrgent is ordered against it
//     run by run, as the transport queues them (one batch at a time).
//   - Landed reports every write of guest RAM once it is complete, from
//     both paths, at most once per write, in the order the writes of a
//     page completed; a page written twice is reported twice. Each page
//     of every run queued with SendPages (zero runs too) is one write,
//     reported exactly once unless an urgent copy overtook it (below):
//     the engine counts on it (post-copy's switch, before any urgent
//     page, waits until Landed reported as many pages as the source
//     queued; conformance case LandedCountsBulk). A fault
//     service that maps a page into the guest (UFFDIO_CONTINUE) after
//     its last expected write was reported never sees the page change
//     under the guest.
//
// Flush covers pages queued with SendPages only; the destination learns
// of urgent pages through Landed.
//
// Errors on the urgent path: SendPagesUrgent on the receiving side and
// Landed on the sending side fail with ErrNotSupported (and a transport
// without an urgent path fails all four so); invalid runs and messages
// are refused as in SendPages and SendMessage, and the session goes on;
// once the session ended (the peer closed it or is gone: ErrClosed; a
// broken format: ErrProtocol) every call returns its error, after
// RecvUrgent and Landed handed out what arrived before the end.
//
// Authentication: a transport authenticates the peer with
// OpenRequest.Credentials before it parses anything the peer sent, and
// encrypts the session unless Credentials.Plaintext (then nothing after
// the handshake is protected: frames can be read and injected on the
// path). A peer that fails is refused and learns nothing about this side
// (no layout, no reason beyond the refusal), and on the receiving side
// it cannot end or delay the session of the real source: Open keeps
// waiting for it. Open without usable credentials fails with
// ErrBadConfig. Secure does the handshake for stream transports.
//
// Migration tag: credentials name hosts, not migrations (two jobs
// between the same hosts may share an operator's certificates, and a
// source in post-copy redials its destination's address, where another
// migration's destination may listen by then). So a sending transport
// names OpenRequest.Tag in its own handshake, on every connection of the
// session, before anything else the session carries. A receiving
// transport opened with a non-zero Tag refuses a peer that names another
// tag, or none, exactly as it refuses a peer without credentials: before
// it parses anything else the peer sent and before one byte of it
// reaches guest RAM; the peer learns nothing of this side beyond the
// refusal (its Open fails with an error wrapping ErrWrongMigration); and
// Open keeps waiting for the real source. A connection that names
// another tag than the rest of its session joins no session, so no
// stranger can splice a stream into one. A receiving Open with the zero
// Tag (a destination's first session when it was given no migration ID,
// or a reconnect of a source whose transport named none) takes any
// authenticated peer; the engine then checks the tag in its
// own HELLO. The transport cannot tell a stranger that names the right
// tag from the real source: the tag is not a secret (derived from the
// migration ID, or random per migration; readable on the path with
// Credentials.Plaintext), so the rule keeps out an honest source of
// another migration, not a credential holder that means harm; the
// credentials are what keep strangers out.
//
// Listening: a receiving transport that listens on an address binds it
// with Listen, so the port stays held from its first receiving Open until
// Close, across a post-copy reconnect's CloseHoldingListeners and the
// next Open (ListenerHolder; a plugin process's socket is held by the
// host). An Open that failed may hold it too: its caller closes the
// transport to let it go. Ports a transport names to its peer inside the authenticated
// session (rdma's fabric ports) may be new at every session instead.
type Transport interface {
	// Info describes the implementation; it needs no Open.
	Info(ctx context.Context) (Info, error)
	// Schema describes the configuration block; it needs no Open.
	Schema(ctx context.Context) (schema.Schema, error)
	// Open starts the session: RoleSend connects to the destination,
	// RoleReceive listens and returns once the source connected and
	// proved its credentials (or ctx ended). The plugin maps the RAM
	// files here. Both sides' Opens should return within a round trip of
	// each other: do any slow setup (registering guest RAM) before the
	// handshake's last message, not after it. The engine sends its
	// first message as soon as Open returns and expects the peer's within
	// its SwitchoverTimeout: a receiving session that stays silent is
	// closed and Open called again, and a source gives up on a reconnect
	// whose RESUME goes unanswered. A transport whose Opens return far
	// apart costs a failed try or more (each next one waits twice as
	// long), and a refused first run in pre-copy. An Open that failed
	// may leave something open (a listening port; over gRPC, the
	// plugin's side of an Open whose ctx ended may still run, and
	// succeed, after the host's call returned): its caller closes the
	// transport (Close, or CloseHolding to keep the port) before it
	// opens it again, as both engine sides do.
	Open(ctx context.Context, req OpenRequest) error
	// SendPages queues page runs for sending (RoleSend). Data pages are
	// read from guest RAM at some moment before the next Flush returns;
	// the engine relies on the dirty log, not on a snapshot, for pages
	// the guest changes meanwhile. Runs must lie inside RAM.
	SendPages(ctx context.Context, runs []PageRun) error
	// Flush returns once the destination has written every page queued
	// before the call into its guest RAM (RoleSend). Pages of one Flush
	// interval never overtake those of an earlier one.
	Flush(ctx context.Context) error
	// SendMessage sends m after every message sent before it. m.Payload
	// is the caller's again when it returns (the engine reuses its
	// buffers): a transport that sends later copies it first.
	SendMessage(ctx context.Context, m Message) error
	// RecvMessage returns the next message from the other side; its
	// payload is the caller's to keep (no later call reuses it).
	RecvMessage(ctx context.Context) (Message, error)
	// SendUrgent sends m on the urgent path (either role), after every
	// urgent message sent before it and behind no pages or ordinary
	// messages. Payload bounds, ownership (the caller's again when it
	// returns) and errors are SendMessage's.
	SendUrgent(ctx context.Context, m Message) error
	// RecvUrgent returns the next urgent message from the other side, in
	// their order; its payload is the caller's to keep, as RecvMessage's.
	// Messages that arrived before the session ended are still
	// returned, then the session's error (ErrClosed when the peer ended
	// it or is gone).
	RecvUrgent(ctx context.Context) (Message, error)
	// SendPagesUrgent queues page runs on the urgent path (RoleSend):
	// pages the destination asked for. Data pages are read from guest RAM
	// when sent. The runs are checked like SendPages's (all refused if
	// one is invalid) and never wait behind bulk pages, queued or in
	// flight; the call returns once they are handed to the network (no
	// Flush needed or implied). Per-page ordering against SendPages: see
	// the urgent path rules above.
	SendPagesUrgent(ctx context.Context, runs []PageRun) error
	// Landed blocks until page runs have been completely written into
	// guest RAM (RoleReceive), from either path, since the previous call,
	// and returns them (at most MaxLanded runs, in completion order; the
	// rest wait for the next call). Writes are recorded from the start of
	// the session, so the first call also returns what landed before it:
	// the engine starts asking when it likes, and a peer that writes at
	// once loses no report. A session that is never asked may stop
	// recording after a bound; a first call after that fails with
	// ErrLandedLost (LandedQueue). Once the session ended, the runs
	// recorded before its end are returned first, then its error.
	// Every run must pass PageRun.Check for the session's guest RAM: the
	// engine takes a transport that reports another for faulty. It
	// refuses a batch with a run that claims a write it may not make
	// (outside guest RAM; of no kind over pages it holds: before
	// post-copy's switch the migration fails, after it post-copy breaks)
	// and drops one that claims nothing it could act on (empty; of no
	// kind over pages not arrived yet, which then arrive only when sent
	// again after a reconnect): docs/POSTCOPY.md.
	Landed(ctx context.Context) ([]PageRun, error)
	// Stats reports traffic so far; after Close, the last session's
	// totals, or an error if it cannot vouch for them (a launched
	// plugin closed while stopped, hung or gone: the last counters
	// seen come with it). The engine takes a session whose BytesWire stands still
	// (with no call returning and no message arriving) for its
	// StallTimeout for stalled, on either side: a transport must count
	// bytes as they move, a sending one as it writes them (a Flush that
	// waits on a slow link is not a stall), a receiving one as pages
	// arrive, not at a Flush (engine.Options.StallTimeout; transporttest's
	// CountsBeforeFlush checks the receiving side).
	Stats(ctx context.Context) (Stats, error)
	// Close ends the session and releases the RAM mappings; pending page
	// sends are abandoned, but a message sent before Close still reaches
	// the peer (the engine sends ABORT, then closes). On the receiving
	// side nothing of the session writes guest RAM once Close returned:
	// the writes in flight are finished (counted in Stats after Close,
	// though Landed may never report them) or abandoned before it
	// returns. A post-copy destination relies on it: its reconnect
	// closes the old session, waits for its landed lane to end, and
	// names in MISSING every page not reported; a write of the old
	// session landing after that could overwrite a page the guest owns
	// by then (CONTINUE maps the memfd's page). The transport may be
	// Opened again (a launched plugin restarts for it).
	Close() error
}

// Pusher is an optional interface of a Transport: it hands the urgent
// path's arrivals to a sink instead of to a goroutine blocked in
// RecvUrgent or Landed. The plugin side of the urgent channel uses it
// when the transport has it: a post-copy request (on the source) and its
// page (on the destination) then reach the host from the goroutine that
// received them, without waking another thread of the plugin first
// (docs/BENCHMARKS.md, "Pushed, not pulled").
//
// PushUrgent and PushLanded take over their lane for the rest of the
// current session, in place of RecvUrgent and Landed (the caller no
// longer calls those): what they would have returned goes to the sink,
// in the same order and under the same rules (PushLanded gets what landed
// before it, as Landed's first call does), and the session's end, the error they
// would then return, goes to ended, once, after the last item. Landed
// runs may be gathered before they go (a burst of writes as one call),
// never held while the transport waits for input. A sink
// runs on one of the transport's own goroutines, possibly under its
// locks: it must not call the transport and must not block for long (it
// may write to a socket whose reader keeps reading), and it must not keep
// the slice it is given. An error from the urgent sink (a flooding peer)
// fails the session. Both return an error, and arm nothing, when no
// session is open; ErrNotSupported when this lane is not pushed here (or
// does not exist on this side), and the caller then calls RecvUrgent or
// Landed as without a Pusher (they say why if the lane does not exist).
//
// Only the plugin side of the urgent channel uses it. The engine calls
// RecvUrgent and Landed: its callers' hand-offs cost nothing measurable
// (docs/BENCHMARKS.md, "Pushed, not pulled").
type Pusher interface {
	PushUrgent(urgent func(Message) error, ended func(error)) error
	PushLanded(landed func([]PageRun), ended func(error)) error
}

// Answerer is an optional interface of a sending Transport: it answers
// post-copy's page requests itself, from its own mapping of guest RAM,
// as they arrive, instead of handing them to the engine through
// RecvUrgent and waiting for its SendPagesUrgent. Through a plugin that
// saves two crossings of the host/plugin boundary per network fault
// (docs/BENCHMARKS.md, "The source's plugin answers").
//
// Answer arms the current session: from then on an urgent message of
// kind is a page request (PageRequest's format). The transport takes the
// requested pages that owed holds out of it (Owed.Take: whoever takes a
// page sends it, exactly once), sends them as SendPagesUrgent would (an
// all-zero page may go as a zero run), counts them in owed
// (AddCounts), moves owed's resume point past the request, and does not
// return the request from RecvUrgent. Requests that arrived before Answer
// stay RecvUrgent's. A malformed request fails the session (ErrProtocol).
//
// Answer is called on the urgent sender's lane (with SendUrgent and
// SendPagesUrgent). The transport may use owed until its session ends,
// and not after Close returns: the caller closes owed after that. owed
// is one session's: the caller gives a new one to the next session.
// ErrNotSupported means the caller keeps answering (RecvUrgent).
type Answerer interface {
	Answer(ctx context.Context, kind uint32, owed *Owed) error
}

// PageRequest decodes a page request (the engine's REQUEST) for a guest
// of pages pages and appends its runs to dst (Kind unset): u32 flags (0
// or 1), u32 n <= MaxRequestRuns, then n runs of u64 first, u64 count,
// non-empty, increasing and inside RAM, little endian. An error wraps
// ErrProtocol.
func PageRequest(b []byte, pages uint64, dst []PageRun) ([]PageRun, error) {
	if len(b) < 8 {
		return dst, fmt.Errorf("%w: page request of %d bytes", ErrProtocol, len(b))
	}
	flags, n := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	if flags > 1 || n > MaxRequestRuns || uint64(len(b)) != 8+16*uint64(n) {
		return dst, fmt.Errorf("%w: page request with flags %#x and %d runs in %d bytes", ErrProtocol, flags, n, len(b))
	}
	var after uint64
	for i := uint32(0); i < n; i++ {
		o := 8 + 16*i
		r := PageRun{First: binary.LittleEndian.Uint64(b[o:]), Count: binary.LittleEndian.Uint64(b[o+8:])}
		if r.Count == 0 || r.First < after || r.First > pages || r.Count > pages-r.First {
			return dst, fmt.Errorf("%w: page request run %d+%d (after page %d, guest has %d)", ErrProtocol, r.First, r.Count, after, pages)
		}
		after = r.First + r.Count
		dst = append(dst, r)
	}
	return dst, nil
}

// AppendPageRequest appends the page request for runs (PageRequest's
// format, flags 0; Kind is ignored) to b.
func AppendPageRequest(b []byte, runs []PageRun) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(runs)))
	for _, r := range runs {
		b = binary.LittleEndian.AppendUint64(b, r.First)
		b = binary.LittleEndian.AppendUint64(b, r.Count)
	}
	return b
}

// MaxRequestRuns bounds the runs of one page request: as many as a
// message holds.
const MaxRequestRuns = (MaxMessage - 8) / 16

// Error classes that cross the plugin boundary, so callers can tell a
// dead plugin from a failed operation (errors.Is).
var (
	ErrNotSupported = errors.New("not supported by this transport")
	ErrPluginGone   = errors.New("transport plugin process is gone")
	ErrClosed       = errors.New("transport session closed by the peer")
	// ErrWrongMigration is a sending Open's error when the destination
	// refused the session because it waits for another migration
	// (OpenRequest.Tag).
	ErrWrongMigration = errors.New("the destination waits for another migration")
	ErrBadConfig      = schema.NewErrBadConfig("bad transport configuration")
	ErrProtocol       = errclass.ErrProtocol // also wire.ErrProtocol
)
