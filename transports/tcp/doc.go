// Package tcp is Ferry's TCP transport: it moves guest pages and engine
// messages between a source and a destination over one or more TCP
// connections, in the frame format of framework/wire.
//
//	source (RoleSend)                                  destination (RoleReceive)
//	SendPages ─ split into batches of ≤256 pages,      listen; accept the N streams of one
//	            aligned to a 256-page grid; batch        session; check each HELLO's RAM layout
//	            k goes to stream k mod N
//	    ┌ queue ─ writer 0 ─ lz4? ─ writev ═══ stream 0 ══► reader 0 ─ bounds check ─ RAM (pwrite)
//	    │                 MSG ◄──────────────── (both ways) ───────────► MSG        └ ACK ─┐
//	    └ queue ─ writer 1 ─ lz4? ─ writev ═══ stream 1 ══► reader 1 ─ bounds check ─ RAM  │
//	Flush ─ waits until every stream's ACK covers what was queued ◄──────────────────────┘
//
// Every stream opens with authentication (tls.go, transport.Secure):
//
//	source (TLS client)                              destination (TLS server)
//	dial ──────────────────────────────────────────► accept; pending slot (64; full: evict
//	                                                  the oldest unauthenticated one of a
//	                                                  host holding over 17, else the oldest)
//	ClientHello ───────────────────────────────────► ServerHello … CertificateRequest, Finished
//	Certificate, CertificateVerify, Finished ──────► verify against the peer roots (≤ 3 s);
//	                                                  failed: close, no reply, logged once per host
//	read go-ahead ◄───────────── go-ahead (in TLS) ─  only now is anything read from the peer
//	HELLO (session, tag) ══════════════════════════► tag check: another migration's (or none, wire
//	                                                  version 1) while a tag is awaited: ABORT "another
//	                                                  migration", close, nothing more read; wait on
//	                                                  layout check (ABORT only to this peer)
//	      ◄═════════════════════════════════════════ HELLO (in the source's wire version)
//	═══ frames inside TLS 1.3 (AES-GCM), or with Credentials.Plaintext on the bare socket ═══
//
// One more connection, the urgent stream, carries the urgent path
// (transport API 3, urgent.go): opened after the bulk streams to the same
// address, with the same credentials, handshake and TCP_NODELAY, its
// HELLO flagged wire.FlagUrgent. Urgent messages travel on it both ways
// and urgent pages from the source; no bulk frame and no queue ever sits
// in front of them. On the destination each bulk stream has a
// transport.Lane: an urgent page is staged, then written under its
// stream's lane, and a bulk copy queued before it is dropped when it
// arrives; bulk batches are staged too, so the lane is never held across
// a network read. Landed reports every write from both paths. On the
// source, once the engine armed it (Answer, transport.Answerer), the
// urgent stream's reader answers a page request itself: it takes the
// requested pages still owed from the shared owed set and writes them
// back on the same stream, read from the mapping.
//
// The tag is OpenRequest.Tag (transport.Transport, "Migration tag"): the
// source names it in the HELLO of every stream, the destination files a
// stream under its session id, tag and wire version together, so a
// stream naming another tag never completes someone else's session, and
// a destination opened with a tag refuses every stream that names
// another before it reads a frame more of it: no page of another
// migration's source reaches guest RAM. A destination opened with the
// zero tag takes the first complete session of any tag (a source of wire
// version 1 names none) and answers it in the wire version it spoke
// (docs/ARCHITECTURE.md#versions). Across versions each side says which
// one to upgrade: a version-1 source refused by a destination opened
// with a tag is told to upgrade itself; a source refused in an older
// version than its own, to upgrade the destination.
//
// The go-ahead orders the plaintext switch: nothing raw travels before the
// other side's TLS finished reading, so no frame bytes sit in a TLS buffer.
//
// Page bytes move through one buffer per stream on each side, never
// through the mappings: the source reads a batch from the guest RAM file
// with pread into its writer's buffer (then lz4, writev), the destination
// reads (or decompresses) it into its stream's staging buffer and writes
// it into the RAM file with pwrite. The kernel fills and reads the page
// cache without a page fault per page, which here cost more than the
// copies (docs/BENCHMARKS.md, "End-to-end throughput"); the buffers stay
// hot. ZERO runs punch holes, so the destination stays sparse; a zero run
// that spans more than one cell of the grid goes as one strided ZERO
// frame per stream (wire.Run: the stream's own cells of the range), and
// the destination asks the RAM file where its data is (SEEK_DATA) before
// it punches, so a hole of any size costs a few frames and system calls,
// not one per MiB. With
// encryption the TLS layer seals and opens through its own buffers
// (docs/BENCHMARKS.md has the cost). A message or urgent frame goes to
// TLS in the fewest records (inRecords in msg.go): one, and one
// write(2), when it fits in 16 KiB; a page batch's header is a record of
// its own, gathered with the batch's records into writes of up to 256
// KiB (recordConn). Stats count frame bytes, not TLS record overhead.
//
// Ordering: a page index always travels on the same stream (the grid),
// and each stream is FIFO, so a later send of a page never overtakes an
// earlier one, within a Flush interval or across. Flush waits for the
// ACKs; a Flush cut short by its context is finished by the next
// SendPages or Flush before anything new is queued.
//
// Failure: any error on any stream fails the whole session; the side that
// saw it sends ABORT with a reason on the streams still usable and closes
// them all (a stream a write stopped inside a frame, or over TLS any cut
// write, is broken: no ABORT goes there, and once the ABORT went on
// another it is closed when the peer's end of a stream, or its BYE or
// ABORT, shows its session ended, or at the wind-down's bound
// (goodbyeTimeout), so that the peer reads the reason, not the cut; a
// Close meanwhile waits for that, not closing it first; with the ABORT
// gone nowhere, at once; either way before Close returns. A peer that
// reads the ABORT's stream later than the bound, behind a backlog, may
// still read the cut first: the stream's end (transport.ErrClosed, no
// reason), or, when the cut tore a frame or a TLS record, a truncated
// frame (transport.ErrProtocol, as if this side broke the format)).
// Calls then return the error: it wraps transport.ErrProtocol for frames
// that break the format or the layout, transport.ErrClosed when the peer
// went away or gave up, and neither when this side cut a write: its
// call's context (the text says so; in plaintext a cut before any of the
// frame's bytes went leaves the session going on, and the call returns
// the context's error), or its own wind-down (the call returns the
// session's error). A call whose context ended before its write began
// writes nothing and returns the context's error, over TLS too: the
// session goes on. writeFrame in msg.go has the rules.
//
// Configuration: parseConfig (config.go) is the one place of the block's
// rules. Open runs it first, in either role; Validate
// (transport.Validator) runs it alone, so `migrate -check` refuses
// streams outside 1 to 16, a compress other than "lz4" or "none", and a
// listen or connect that is not host:port with a fixed port, each at its
// attribute's file:line. Both addresses are checked whatever the role.
// Neither finds an address the destination cannot bind or the source
// cannot reach: only Open's dial and listen do.
//
// The package is a plain Go package; cmd/ wraps it in a go-plugin server.
package tcp
