// Package rdma is the RDMA transport: pages move as one-sided RDMA writes
// through libfabric, straight from the source's guest RAM into the
// destination's, with no copy by either CPU; messages, zero runs and
// acknowledgements travel on authenticated control channels.
//
//	source                                        destination
//	control: TCP + transport.Secure (mutual TLS) ─► HELLO tag, layout (another migration's tag:
//	                                            ◄── OTHER, close, wait on for the right source)
//	                                            ◄── OFFER nonces, fabric ports
//	fabric: fi_connect(nonce) ════════════════════► bulk endpoint (that nonce only)
//	fabric: fi_connect(unonce) ═══════════════════► urgent endpoint (that nonce only)
//	                                            ◄── KEYS base+key per region and endpoint (inside TLS)
//	urgent: 2nd TCP + transport.Secure, URGENT unonce, tag ─► urgent channel
//	                                            ◄── URGENT (accepted)
//	READY (urgent channel) ───────────────────────► the source's Open succeeded: Open returns
//
//	SendPages: data  ═ fi_write(RAM → RAM) ═══════► guest RAM (registered once, one domain for both endpoints)
//	           zero  ─ ZERO seq (control) ────────► punched / cleared, Landed
//	           runs  ─ RUNS seq (control) ────────► which data runs the batch wrote
//	           end of each call: MARK seq k ══════► runs of the first k RUNS visible: Landed
//	                                            ◄── MARKED seq (control)
//	           writes completed: PROGRESS seq n ──► counted in Stats (not Landed: not yet visible)
//	Flush:     COMMIT seq (fi_send after writes) ═► writes visible (FI_ORDER_SAW): Landed
//	                                            ◄── ACK seq (control) when COMMIT,
//	                                                ZEROs and RUNS are in
//	messages   ─ MSG (control, both ways) ────────► RecvMessage
//	urgent     ─ MSG (urgent channel, both ways) ─► RecvUrgent
//	SendPagesUrgent: fi_write on the urgent endpoint, then
//	           UCOMMIT useq runs (fi_send after) ═► visible; zero runs applied: Landed
//	                                            ◄── ACK useq (urgent channel)
//
// Trust: the fabric ports, the nonces and the registration keys are given
// only inside the authenticated channel, so a stranger gets no key; a
// fabric connection without its nonce is rejected, and so is an urgent
// channel (which must also pass the TLS handshake). The migration's tag
// (OpenRequest.Tag, transport.Transport "Migration tag") is the first
// thing HELLO says: a destination opened with a tag refuses a source
// that names another (OTHER, nothing else) before it looks at its
// layout or offers anything, and waits on; the urgent channel must name
// the session's tag with its nonce. So another migration's source, even
// with the job's credentials, never gets the keys to write guest RAM.
// One gate (gate.go) serves the control port for the destination's
// whole Open: a HELLO of the source's next try, arriving while a try of
// the same tag is in setup and before its urgent channel was accepted,
// replaces that try at once. Page contents travel
// unencrypted (RDMA cannot encrypt them), so Open requires either
// plaintext credentials or cleartext_pages = true (transport.CleartextPages,
// which also makes the engine's report say so).
//
// Completion: with the default completion level a finished fi_write is
// not yet visible at the target. Each batch ends with a COMMIT sent after
// its writes on the same endpoint; the provider's FI_ORDER_SAW delivers it
// after them. Providers without FI_ORDER_SAW are opened with
// FI_DELIVERY_COMPLETE and the COMMIT waits for every write's completion.
// Urgent pages are committed the same way on their own endpoint (UCOMMIT).
//
// Counting: the source's Stats count a data page when its write
// completes, not when it is posted, so they move while a Flush drains
// and stop with the link. The destination cannot see the writes land,
// so the source reports, at most every progressEvery, how many of the
// batch's data pages its writes completed (PROGRESS, progress.go; setup
// version 5); the destination's Stats count them then and the rest at
// the COMMIT, so they grow while a pass moves, not only at its Flush
// (transport.Transport's Stats; the engine's stall watch reads them on
// both sides). A PROGRESS makes nothing visible: nothing reads or
// reports a page before its MARK or COMMIT. Nor does the destination
// count more than the batch's RUNS named (at most guest RAM's pages per
// batch; setup version 6): a PROGRESS, COMMIT or RUNS frame that claims
// more is a protocol error, and so is an urgent COMMIT that lists more
// than guest RAM's pages. Whether named pages were written it cannot
// tell.
// A zero run and a data run of the same page in one batch would race
// (different channels), so such a batch is committed in between.
//
// The urgent path (transport API 3) and its per-page ordering: urgent.go.
// Once armed (Answer, transport.Answerer), the urgent channel's reader
// queues a page request's owed pages itself, as SendPagesUrgent would.
// Landed reports bulk data runs at the MARK that follows the SendPages
// call that queued them (at most maxMarks MARKs wait for their MARKED:
// with that many unanswered, SendPages waits for one before it posts
// its MARK), or at their batch's COMMIT, on the source's Flush, where
// no MARK covered them (without FI_ORDER_SAW there are none; a call that
// failed before its MARK); bulk zero runs as they are applied, urgent
// runs at their UCOMMIT.
//
// The fabric subpackage is the cgo shim; without cgo or libfabric, Open
// returns ErrNotSupported. Providers: verbs (rdma-core hardware), and
// tcp, sockets, net, which run the same calls without hardware (README.md).
package rdma
