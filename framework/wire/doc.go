// Package wire is the frame format the network transports speak between a
// source and a destination: every byte on a migration stream is a frame,
// and every frame starts with the same checked header.
//
//	0       4     5      6       7       8            12                  20
//	┌───────┬─────┬──────┬───────┬───────┬────────────┬───────────────────┐
//	│ magic │ ver │ type │ flags │ rsvd  │ length u32 │ seq u64           │ payload (length bytes)
//	│"FRYW" │ 1,2 │ 1..7 │       │  0    │            │                   │
//	└───────┴─────┴──────┴───────┴───────┴────────────┴───────────────────┘
//	big-endian; length counts the payload only.
//
//	type    payload                                                     seq
//	HELLO   session[16] tag[16] stream u16 streams u16 pagesize u32      0
//	        nregions u32, then nregions × (gpa u64, size u64)
//	        (version 1: no tag)
//	PAGES   first u64 count u32 rsvd u32, then the pages:                batch number
//	        count×4096 raw bytes, or an lz4 block (flags&Compressed)
//	ZERO    first u64 count u32, then cell u16 every u16 (flags&Strided) batch number
//	        or rsvd u32
//	ACK     (none)                                                       last batch written
//	MSG     kind u32, then at most MaxMessage bytes                      0
//	BYE     reason (UTF-8, at most MaxReason bytes)                      0
//	ABORT   code u32, then reason (at most MaxReason bytes)              0
//
// A session is one or more TCP (or other byte) streams. The source opens
// each with HELLO, naming the session and the migration it belongs to
// (the tag, transport.Tag); the destination answers HELLO (accepted) or
// ABORT (refused, with a code and a reason). Then the source sends PAGES and
// ZERO frames numbered 1, 2, 3... per stream, and the destination answers
// ACK n once every batch up to n of that stream is in guest RAM. MSG
// frames travel on stream 0 in both directions. BYE ends a session
// normally, ABORT says why it failed.
//
// A ZERO run may be strided (FlagStrided): of its range it
// covers the pages in one cell of every "every" cells of "cell" pages,
// starting with the first page's cell (Run). The TCP transport deals
// pages out to its streams in cells round robin and sends a long zero run
// as one strided frame per stream, so the holes of an idle guest cost a
// few frames, not one per cell. A Decoder returns strided runs only to a
// reader that named the stride it takes (AcceptStrided).
//
// A session may add one urgent stream (transport API 3): its HELLO
// carries FlagUrgent, stream 0 and the number of bulk streams. On it, MSG
// frames travel both ways (urgent messages), and the source sends PAGES
// and ZERO frames whose seq is not a batch number of their own but the
// last batch number the source had queued on the bulk stream carrying
// those pages (the destination drops a bulk copy of a page with a batch
// number up to that one once the urgent copy landed); nothing on it is
// acknowledged.
//
// Versions: a Decoder reads Version and MinVersion (the one before), and
// a stream speaks the version of its first frame throughout (Decoder.Version).
// Version 2 added HELLO's tag; every other frame is laid out the same in
// both, so a destination answers a version-1 source with AppendHelloIn
// and SetVersion (docs/ARCHITECTURE.md#versions).
//
// The Decoder checks magic, version, type, flags, the reserved fields and
// every length before it reads a payload, so a hostile or torn stream
// costs at most MaxPayload bytes of buffer and yields an error that wraps
// ErrProtocol (which is transport.ErrProtocol). MaxMessage is
// transport.MaxMessage, a test in framework/transport checks it; the
// package imports nothing from the plugin kinds. Page indices are not checked against guest RAM
// here: that is the transport's job, as only it knows the layout.
package wire
