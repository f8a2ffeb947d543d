// Package rdma is the RDMA transport: pages move as one-sided RDMA writes
// through libfabric, straight from the source's guest RAM into the
// destination's, with no copy by either CPU; messages, zero runs and
// acknowledgements travel on an authenticated control channel.
//
//	source                                        destination
//	control: TCP + transport.Secure (mutual TLS) ─► HELLO layout
//	                                            ◄── OFFER nonce, fabric port
//	fabric: fi_connect(nonce) ════════════════════► accepted only with the nonce
//	                                            ◄── KEYS base+key per region (inside TLS)
//	SendPages: data  ═ fi_write(RAM → RAM) ═══════► guest RAM (registered once)
//	           zero  ─ ZERO seq (control) ────────► punched / cleared
//	Flush:     COMMIT seq (fi_send after writes) ═► writes visible (FI_ORDER_SAW)
//	                                            ◄── ACK seq (control) when COMMIT
//	                                                and the batch's ZEROs are in
//	messages   ─ MSG (control, both ways) ────────► RecvMessage
//
// Trust: the fabric port, the nonce and the registration keys are given
// only inside the authenticated channel, so a stranger gets no key; a
// fabric connection without the nonce is rejected. Page contents travel
// unencrypted (RDMA cannot encrypt them), so Open requires either
// plaintext credentials or cleartext_pages = true.
//
// Completion: with the default completion level a finished fi_write is
// not yet visible at the target. Each batch ends with a COMMIT sent after
// its writes on the same endpoint; the provider's FI_ORDER_SAW delivers it
// after them. Providers without FI_ORDER_SAW are opened with
// FI_DELIVERY_COMPLETE and the COMMIT waits for every write's completion.
// A zero run and a data run of the same page in one batch would race
// (different channels), so such a batch is committed in between.
//
// The fabric subpackage is the cgo shim; without cgo or libfabric, Open
// returns ErrNotSupported. Providers: verbs (rdma-core hardware), and
// tcp, sockets, net, which run the same calls without hardware (README.md).
package rdma
