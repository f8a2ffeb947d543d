// shim.h: the small C surface transports/rdma/fabric calls through cgo.
// Every call returns at once or within a timeout given in milliseconds, so
// the Go side can check its context between calls. Errors: a negative
// libfabric error code, with a message written into err (errlen bytes).
#ifndef FERRY_FABRIC_SHIM_H
#define FERRY_FABRIC_SHIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct fe fe;   // one fabric object: passive (listening) or connected
typedef struct fi_info fe_info;

// fe_caps is what the opened provider offers, as the transport needs it.
typedef struct {
	uint64_t mr_mode;       // FI_MR_* bits the provider requires
	int saw;                // FI_ORDER_SAW on both tx and rx
	int delivery_complete;  // writes carry FI_DELIVERY_COMPLETE (no SAW)
	size_t tx_size, rx_size, key_size;
	uint64_t max_msg;
	char prov[32], domain[64];
} fe_caps;

// fe_comp is one completion.
typedef struct {
	uint64_t ctx;   // the context the operation was posted with
	uint64_t len;   // bytes received (receives)
	uint64_t flags; // FI_SEND, FI_RECV, FI_WRITE, ...
} fe_comp;

// fe_force_dc makes later opens skip FI_ORDER_SAW and use
// FI_DELIVERY_COMPLETE (tests of that path on providers that have both).
extern int fe_force_dc;

// fe_warm runs libfabric's one-time initialisation and prov's first
// getinfo ("": the initialisation, and no core provider's getinfo); it
// cannot be interrupted.
void fe_warm(const char *prov);

// fe_listen and fe_connect open their own fabric and domain, or, with
// share, join share's: every endpoint of one domain uses the memory
// registered in it (closed with the last fe that holds it).
int fe_listen(const char *prov, const char *host, fe *share, fe **out, char *err, size_t errlen);
int fe_port(fe *f, int *port, char *err, size_t errlen);
// fe_wait_connreq: 1 with *req and the peer's param data, 0 on timeout.
int fe_wait_connreq(fe *f, int timeout_ms, fe_info **req, uint8_t *param, size_t *paramlen, char *err, size_t errlen);
int fe_reject(fe *f, fe_info *req);
// fe_accept_prepare builds domain, cq and endpoint from a request; the
// caller registers memory and posts receives, then calls fe_accept.
int fe_accept_prepare(fe *f, fe_info *req, char *err, size_t errlen);
int fe_accept(fe *f, char *err, size_t errlen);
// After an accept, the fe keeps the passive endpoint (still listening)
// until fe_stop_listening or fe_close. fe_drain_connreqs rejects the
// requests queued meanwhile (the count); call it on every fe of the
// fabric before fe_stop_listening on any, and read no event queue of the
// fabric after (shim.c says why).
int fe_drain_connreqs(fe *f);
void fe_stop_listening(fe *f);
int fe_connect(const char *prov, const char *host, const char *port, const uint8_t *param, size_t paramlen,
	fe *share, fe **out, char *err, size_t errlen);
// fe_wait_connected: 1 connected, 0 timeout, <0 refused or failed.
int fe_wait_connected(fe *f, int timeout_ms, char *err, size_t errlen);
void fe_get_caps(fe *f, fe_caps *c);

int fe_mr_reg(fe *f, void *addr, size_t len, uint64_t access, uint64_t key, void **mr, uint64_t *outkey,
	void **desc, char *err, size_t errlen);
void fe_mr_close(void *mr);

int fe_write(fe *f, void *buf, size_t len, void *desc, uint64_t raddr, uint64_t key, uint64_t ctx);
int fe_send(fe *f, void *buf, size_t len, void *desc, uint64_t ctx);
int fe_recv(fe *f, void *buf, size_t len, void *desc, uint64_t ctx);
// fe_poll: completions into out (at most n), waiting up to timeout_ms for
// the first; 0 on timeout; a failed operation: < 0 with its context in
// out[0].ctx and the provider's reason in err.
int fe_poll(fe *f, fe_comp *out, int n, int timeout_ms, char *err, size_t errlen);
void fe_close(fe *f);
const char *fe_strerror(int code);

#endif
