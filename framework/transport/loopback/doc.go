// Package loopback is a small transport for tests: NewPipe connects two
// transports in one process through net.Pipe, New connects two processes
// through a unix socket (config "socket": the receiver listens, the
// sender dials). Both copy pages between the two sides' guest RAM files
// with pread/pwrite, so the conformance suite (transporttest) can run
// against them in process and, wrapped as a plugin, over real gRPC.
//
// Every session starts with transport.Secure: a TLS 1.3 handshake with
// the OpenRequest's credentials (mutual, pinned or CA roots); the frames
// below then travel inside TLS, or in the clear after it with
// Credentials.Plaintext. A session ends with BYE (inside TLS) and the
// connection under TLS closed, without TLS's close_notify: that alert
// waits, up to crypto/tls's 5 s, for the peer to read it, which a peer
// closing at the same time over net.Pipe does not do.
//
// The byte stream, one frame after another, big-endian:
//
//	frame  = type u8 | length u32 | body (length <= 1 MiB + 17)
//	HELLO  1  "FLBK" | version u16 | role u8 | tag [16] | regions u32 | (gpa u64 | size u64)*
//	PAGES  2  first u64 | count u64 | kind u8 | count*4096 bytes if data (count <= 256)
//	FLUSH  3  seq u64          sender → receiver, after the pages it covers
//	ACK    4  seq u64          receiver → sender, once those pages are written
//	MSG    5  kind u32 | payload (<= transport.MaxMessage)
//	BYE    6  (empty)          either side, on Close
//	UMSG   7  kind u32 | payload   an urgent message, either way
//	UPAGES 8  after u64 | a PAGES body   urgent pages, sender → receiver
//	REFUSE 9  (empty)          receiver → sender: it waits for another migration
//
//	sender                              receiver
//	TLS 1.3 handshake ◄────────────────► verify the peer's certificate
//	      ◄───────────────────────────── go-ahead (inside TLS)
//	HELLO ─────────────────────────────► check magic, version, then the tag:
//	      ◄───────────────────────────── another migration's: REFUSE, close, wait on
//	                                     role, layout
//	      ◄───────────────────────────── HELLO (the tag it took)
//	PAGES PAGES FLUSH(n) ──────────────► pwrite into guest RAM, in order
//	      ◄───────────────────────────── ACK(n): Flush(n) returns
//	                                     (FLUSH to ACK: Stats.RTT, pages ahead included)
//	MSG ◄──────────────────────────────► MSG   (either way, any time)
//
// The urgent path shares the one connection: SendUrgent and
// SendPagesUrgent write their frames between bulk frames (the write lock
// is handed over in arrival order), so an urgent frame waits for at most
// the one frame being written (<= 1 MiB) and what the kernel buffered,
// never for the rest of a SendPages call. Bulk PAGES frames are numbered
// by their order on the connection; "after" is the number of bulk frames
// written before the urgent frame was, and the receiver applies
// transport.Lane's rule with it (one lane; on one ordered connection it
// never drops anything).
//
// The tag is OpenRequest.Tag (transport.Transport, "Migration tag"): a
// receiver opened with a non-zero tag refuses a sender that names
// another one, or fails to authenticate, and waits for the next
// connection (a new pipe, or the next on the socket) within Open's
// context; with the zero tag it takes any. Any other failure of an
// authenticated peer (another layout, a broken HELLO) ends Open.
//
// The receiver checks every frame: its length, its type for the
// receiver's role, and that every run lies inside guest RAM; anything
// else ends the session with transport.ErrProtocol.
package loopback
