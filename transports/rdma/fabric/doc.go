// Package fabric is the cgo shim between transports/rdma and libfabric:
// FI_EP_MSG endpoints with FI_RMA, opened for one named provider.
//
//	destination (Listen)                      source (Connect)
//	passive endpoint ◄── fi_connect(param) ── endpoint
//	  Accept: check param, else fi_reject
//	  Register(RAM, remote write) ─ key ─► (told inside TLS by the caller)
//	endpoint ◄═══════ fi_write(RAM → RAM), fi_send ═══════ endpoint
//	  Poll: completions, each call bounded by a timeout
//
// It is the only cgo in Ferry (shim.c, shim.h, fabric_unsafe.go) and is
// built only with cgo on Linux (the nolibfabric build tag turns it off);
// otherwise every call returns ErrNotSupported (stub.go).
//
// Memory registration follows the provider's mr_mode: FI_MR_LOCAL needs
// the descriptor of the source's registration on every write,
// FI_MR_VIRT_ADDR addresses the target by virtual address (else by offset
// into the registration), FI_MR_PROV_KEY makes the provider choose the
// key (else the caller's, random, key is used). Completion semantics:
// Caps.SAW means a send posted after writes is delivered after them
// (FI_ORDER_SAW); else writes are posted with FI_DELIVERY_COMPLETE and
// their completion means they are visible at the target.
//
// A process's first call into libfabric runs its one-time
// initialisation, which no context can interrupt (0.1-0.4 s here,
// seconds under emulation); Warm runs it in the background ahead of
// Listen and Connect, so a caller can wait for it outside its bounds.
package fabric
