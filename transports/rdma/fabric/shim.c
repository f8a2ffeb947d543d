//go:build linux && cgo && !nolibfabric

// shim.c: libfabric FI_EP_MSG + FI_RMA for transports/rdma (see shim.h).
#include "shim.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define FE_VERSION FI_VERSION(1, 9)

int fe_force_dc = 0;
#define FE_MR_ASKED (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY)

// fe_dom is a fabric and its resource domain, shared by every fe opened
// with another as share: memory registered once serves all their
// endpoints (refs counts the fe that hold it).
typedef struct {
	struct fid_fabric *fabric;
	struct fid_domain *domain; // opened with the first endpoint
	int refs;
} fe_dom;

struct fe {
	struct fi_info *info;    // the endpoint's (active) or the listener's (passive) info
	struct fi_info *pinfo;   // the listener's, once accepted: the pep may still point into it
	fe_dom *dom;
	struct fid_eq *eq;
	struct fid_pep *pep;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int saw, dc, cq_wait;
};

static int fail(char *err, size_t errlen, int rc, const char *what) {
	if (rc > 0) rc = -rc;
	if (rc == 0) rc = -FI_EOTHER;
	snprintf(err, errlen, "%s: %s (%d)", what, fi_strerror(-rc), rc);
	return rc;
}

const char *fe_strerror(int code) { return fi_strerror(code < 0 ? -code : code); }

// hints asks for a message endpoint with RMA and the memory registration
// modes the transport can handle; saw asks for send-after-write ordering,
// otherwise delivery-complete writes.
static struct fi_info *hints(const char *prov, int saw) {
	struct fi_info *h = fi_allocinfo();
	if (!h) return NULL;
	h->ep_attr->type = FI_EP_MSG;
	h->caps = FI_MSG | FI_RMA | FI_WRITE | FI_REMOTE_WRITE | FI_SEND | FI_RECV;
	h->domain_attr->mr_mode = FE_MR_ASKED;
	h->domain_attr->threading = FI_THREAD_SAFE;
	h->fabric_attr->prov_name = strdup(prov);
	if (saw) {
		h->tx_attr->msg_order = FI_ORDER_SAW;
		h->rx_attr->msg_order = FI_ORDER_SAW;
	} else {
		h->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
	}
	return h;
}

// getinfo tries send-after-write ordering first, then delivery-complete.
static int getinfo(const char *prov, const char *node, const char *service, uint64_t flags,
		struct fi_info **out, int *saw, char *err, size_t errlen) {
	int rc = -FI_ENODATA;
	for (int s = fe_force_dc ? 0 : 1; s >= 0; s--) {
		struct fi_info *h = hints(prov, s);
		if (!h) return fail(err, errlen, -FI_ENOMEM, "fi_allocinfo");
		rc = fi_getinfo(FE_VERSION, node, service, flags, h, out);
		fi_freeinfo(h);
		if (rc == 0) {
			*saw = s;
			return 0;
		}
	}
	snprintf(err, errlen, "fi_getinfo: provider %s offers no FI_EP_MSG endpoint with FI_RMA and "
		"FI_ORDER_SAW or FI_DELIVERY_COMPLETE at %s: %s (%d)", prov, node ? node : "(any)", fi_strerror(-rc), rc);
	return rc;
}

// fe_warm pays libfabric's first use in this process so that fe_listen
// and fe_connect do not: one fi_getinfo asking for prov as they do, at
// no node, whose result or failure is dropped. The process's first
// fi_getinfo runs fi_ini (it loads every provider and reads
// /proc/kallsyms line by line for the memory monitors: 0.1-0.25 s here,
// seconds under emulation; in 1.17 verbs looks for its devices there
// too); a provider's first getinfo may do work of its own. An empty
// prov asks for a provider no library has: fi_ini, and no core
// provider's getinfo; the utility providers' (rxm, rxd, mrail in 1.17)
// still run, since ofi_layering_ok lets a utility provider layer over
// any core name it does not know, and each finds no core provider of
// that name (with FI_LOG_LEVEL=warn each says "returned -61", as they
// do for fe_listen's own fi_getinfo).
void fe_warm(const char *prov) {
	struct fi_info *h = hints(*prov ? prov : "ferry-warm-up-no-such-provider", 1), *info = NULL;
	if (!h) return;
	if (fi_getinfo(FE_VERSION, NULL, NULL, 0, h, &info) == 0) fi_freeinfo(info);
	fi_freeinfo(h);
}

// open_eq joins share's fabric and domain (or opens a fabric of its own)
// and opens the event queue.
static int open_eq(fe *f, fe *share, char *err, size_t errlen) {
	struct fi_eq_attr a = {.size = 16, .wait_obj = FI_WAIT_UNSPEC};
	int rc;
	if (share) {
		f->dom = share->dom;
		f->dom->refs++;
	} else {
		f->dom = calloc(1, sizeof *f->dom);
		if (!f->dom) return fail(err, errlen, -FI_ENOMEM, "calloc");
		f->dom->refs = 1;
		rc = fi_fabric(f->info->fabric_attr, &f->dom->fabric, NULL);
		if (rc) return fail(err, errlen, rc, "fi_fabric");
	}
	rc = fi_eq_open(f->dom->fabric, &a, &f->eq, NULL);
	if (rc) return fail(err, errlen, rc, "fi_eq_open");
	return 0;
}

int fe_listen(const char *prov, const char *host, fe *share, fe **out, char *err, size_t errlen) {
	fe *f = calloc(1, sizeof *f);
	if (!f) return fail(err, errlen, -FI_ENOMEM, "calloc");
	*out = f;
	int rc = getinfo(prov, host, "0", FI_SOURCE, &f->info, &f->saw, err, errlen);
	if (rc) return rc;
	f->dc = !f->saw;
	if ((rc = open_eq(f, share, err, errlen))) return rc;
	rc = fi_passive_ep(f->dom->fabric, f->info, &f->pep, NULL);
	if (rc) return fail(err, errlen, rc, "fi_passive_ep");
	rc = fi_pep_bind(f->pep, &f->eq->fid, 0);
	if (rc) return fail(err, errlen, rc, "fi_pep_bind");
	rc = fi_listen(f->pep);
	if (rc) return fail(err, errlen, rc, "fi_listen");
	return 0;
}

int fe_port(fe *f, int *port, char *err, size_t errlen) {
	struct sockaddr_storage ss;
	size_t len = sizeof ss;
	int rc = fi_getname(&f->pep->fid, &ss, &len);
	if (rc) return fail(err, errlen, rc, "fi_getname");
	if (ss.ss_family == AF_INET) *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6) *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else return fail(err, errlen, -FI_EINVAL, "fi_getname: not an IP address");
	return 0;
}

static int eq_error(fe *f, const char *what, char *err, size_t errlen) {
	struct fi_eq_err_entry e = {0};
	if (fi_eq_readerr(f->eq, &e, 0) < 0) return fail(err, errlen, -FI_EOTHER, what);
	snprintf(err, errlen, "%s: %s (provider: %s)", what, fi_strerror(e.err),
		fi_eq_strerror(f->eq, e.prov_errno, e.err_data, NULL, 0));
	return e.err ? -e.err : -FI_EOTHER;
}

int fe_wait_connreq(fe *f, int timeout_ms, fe_info **req, uint8_t *param, size_t *paramlen, char *err, size_t errlen) {
	struct { struct fi_eq_cm_entry e; uint8_t data[256]; } buf;
	uint32_t ev;
	ssize_t n = fi_eq_sread(f->eq, &ev, &buf, sizeof buf, timeout_ms, 0);
	if (n == -FI_EAGAIN || n == -FI_ETIMEDOUT || n == -FI_EINTR) return 0;
	if (n == -FI_EAVAIL) return eq_error(f, "listen", err, errlen);
	if (n < 0) return fail(err, errlen, (int)n, "fi_eq_sread");
	if (ev != FI_CONNREQ) return 0; // stale events of refused peers
	*req = buf.e.info;
	size_t got = (size_t)n > sizeof buf.e ? (size_t)n - sizeof buf.e : 0;
	if (got > *paramlen) got = *paramlen;
	memcpy(param, buf.data, got);
	*paramlen = got;
	return 1;
}

int fe_reject(fe *f, fe_info *req) {
	int rc = fi_reject(f->pep, req->handle, NULL, 0);
	fi_freeinfo(req);
	return rc;
}

// fe_drain_connreqs rejects the connection requests queued on the event
// queue of an accepted fe whose passive endpoint is still open (strangers'
// requests: each holds a socket until rejected), at most 256. tcp and net
// accept a connection in one read of the queue and turn its request into
// an event in a later one: reading stops after three empty reads in a row.
int fe_drain_connreqs(fe *f) {
	struct { struct fi_eq_cm_entry e; uint8_t data[256]; } buf;
	uint32_t ev;
	int n = 0, empty = 0;
	if (!f->pep) return 0;
	for (int i = 0; i < 256 && empty < 3; i++) {
		ssize_t got = fi_eq_read(f->eq, &ev, &buf, sizeof buf, 0);
		if (got == -FI_EAVAIL) {
			struct fi_eq_err_entry ee = {0};
			fi_eq_readerr(f->eq, &ee, 0);
			continue;
		}
		if (got < 0) {
			empty++;
			continue;
		}
		empty = 0;
		if (ev == FI_CONNREQ && buf.e.info) {
			fe_reject(f, buf.e.info);
			n++;
		}
	}
	return n;
}

// fe_stop_listening closes the passive endpoint an accepted fe still
// holds: its port stops listening. No call may read the event queue of
// any fe of the same fabric afterwards: on net (and tcp) a connection a
// stranger opened to the port but has not yet sent its request on keeps
// a pointer to the closed passive endpoint, followed when the provider's
// connection progress (run by event-queue reads) next looks at it.
void fe_stop_listening(fe *f) {
	if (f->pep) fi_close(&f->pep->fid);
	f->pep = NULL;
	if (f->pinfo) fi_freeinfo(f->pinfo);
	f->pinfo = NULL;
}

// open_ep builds completion queue and endpoint from f->info, in the
// shared domain (opened here for the first endpoint).
static int open_ep(fe *f, char *err, size_t errlen) {
	int rc;
	if (!f->dom->domain) {
		rc = fi_domain(f->dom->fabric, f->info, &f->dom->domain, NULL);
		if (rc) return fail(err, errlen, rc, "fi_domain");
	}
	struct fi_cq_attr ca = {.size = f->info->tx_attr->size + f->info->rx_attr->size,
		.format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_UNSPEC};
	rc = fi_cq_open(f->dom->domain, &ca, &f->cq, NULL);
	if (rc == -FI_ENOSYS || rc == -FI_EINVAL) { // no wait object: poll
		ca.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(f->dom->domain, &ca, &f->cq, NULL);
	} else {
		f->cq_wait = 1;
	}
	if (rc) return fail(err, errlen, rc, "fi_cq_open");
	rc = fi_endpoint(f->dom->domain, f->info, &f->ep, NULL);
	if (rc) return fail(err, errlen, rc, "fi_endpoint");
	if ((rc = fi_ep_bind(f->ep, &f->eq->fid, 0))) return fail(err, errlen, rc, "fi_ep_bind eq");
	if ((rc = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV))) return fail(err, errlen, rc, "fi_ep_bind cq");
	if ((rc = fi_enable(f->ep))) return fail(err, errlen, rc, "fi_enable");
	return 0;
}

// fe_accept_prepare keeps the listener's info until the pep is closed:
// sockets copies the struct, not what it points to, and reads it again
// for every later request (a stranger's request after an accept crashed
// the provider's thread).
int fe_accept_prepare(fe *f, fe_info *req, char *err, size_t errlen) {
	f->pinfo = f->info;
	f->info = req;
	return open_ep(f, err, errlen);
}

int fe_accept(fe *f, char *err, size_t errlen) {
	int rc = fi_accept(f->ep, NULL, 0);
	return rc ? fail(err, errlen, rc, "fi_accept") : 0;
}

int fe_connect(const char *prov, const char *host, const char *port, const uint8_t *param, size_t paramlen,
		fe *share, fe **out, char *err, size_t errlen) {
	fe *f = calloc(1, sizeof *f);
	if (!f) return fail(err, errlen, -FI_ENOMEM, "calloc");
	*out = f;
	int rc = getinfo(prov, host, port, 0, &f->info, &f->saw, err, errlen);
	if (rc) return rc;
	f->dc = !f->saw;
	if ((rc = open_eq(f, share, err, errlen))) return rc;
	if ((rc = open_ep(f, err, errlen))) return rc;
	rc = fi_connect(f->ep, f->info->dest_addr, param, paramlen);
	return rc ? fail(err, errlen, rc, "fi_connect") : 0;
}

int fe_wait_connected(fe *f, int timeout_ms, char *err, size_t errlen) {
	struct fi_eq_cm_entry e;
	uint32_t ev;
	ssize_t n = fi_eq_sread(f->eq, &ev, &e, sizeof e, timeout_ms, 0);
	if (n == -FI_EAGAIN || n == -FI_ETIMEDOUT || n == -FI_EINTR) return 0;
	if (n == -FI_EAVAIL) return eq_error(f, "connect", err, errlen);
	if (n < 0) return fail(err, errlen, (int)n, "fi_eq_sread");
	if (ev == FI_CONNECTED) return 1;
	return fail(err, errlen, -FI_ECONNREFUSED, "connect: the peer shut the connection");
}

void fe_get_caps(fe *f, fe_caps *c) {
	memset(c, 0, sizeof *c);
	struct fi_info *i = f->info;
	c->mr_mode = i->domain_attr->mr_mode;
	c->saw = f->saw;
	c->delivery_complete = f->dc;
	c->tx_size = i->tx_attr->size;
	c->rx_size = i->rx_attr->size;
	c->key_size = i->domain_attr->mr_key_size;
	c->max_msg = i->ep_attr->max_msg_size;
	snprintf(c->prov, sizeof c->prov, "%s", i->fabric_attr->prov_name);
	snprintf(c->domain, sizeof c->domain, "%s", i->domain_attr->name ? i->domain_attr->name : "");
}

int fe_mr_reg(fe *f, void *addr, size_t len, uint64_t access, uint64_t key, void **mr, uint64_t *outkey,
		void **desc, char *err, size_t errlen) {
	struct fid_mr *m;
	int rc = fi_mr_reg(f->dom->domain, addr, len, access, 0, key, 0, &m, NULL);
	if (rc) return fail(err, errlen, rc, "fi_mr_reg");
	*mr = m;
	*outkey = fi_mr_key(m);
	*desc = fi_mr_desc(m);
	return 0;
}

void fe_mr_close(void *mr) { fi_close(&((struct fid_mr *)mr)->fid); }

int fe_write(fe *f, void *buf, size_t len, void *desc, uint64_t raddr, uint64_t key, uint64_t ctx) {
	if (f->dc) {
		struct iovec iov = {.iov_base = buf, .iov_len = len};
		struct fi_rma_iov riov = {.addr = raddr, .len = len, .key = key};
		struct fi_msg_rma m = {.msg_iov = &iov, .desc = &desc, .iov_count = 1,
			.rma_iov = &riov, .rma_iov_count = 1, .context = (void *)ctx};
		return (int)fi_writemsg(f->ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE);
	}
	return (int)fi_write(f->ep, buf, len, desc, 0, raddr, key, (void *)ctx);
}

int fe_send(fe *f, void *buf, size_t len, void *desc, uint64_t ctx) {
	return (int)fi_send(f->ep, buf, len, desc, 0, (void *)ctx);
}

int fe_recv(fe *f, void *buf, size_t len, void *desc, uint64_t ctx) {
	return (int)fi_recv(f->ep, buf, len, desc, 0, (void *)ctx);
}

int fe_poll(fe *f, fe_comp *out, int n, int timeout_ms, char *err, size_t errlen) {
	struct fi_cq_msg_entry e[64];
	if (n > 64) n = 64;
	ssize_t got;
	if (f->cq_wait && timeout_ms > 0) {
		got = fi_cq_sread(f->cq, e, n, NULL, timeout_ms);
	} else {
		got = fi_cq_read(f->cq, e, n);
		if (got == -FI_EAGAIN && timeout_ms > 0) {
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
			got = fi_cq_read(f->cq, e, n);
		}
	}
	if (got == -FI_EAGAIN || got == -FI_ETIMEDOUT || got == -FI_EINTR) return 0;
	if (got == -FI_EAVAIL) {
		struct fi_cq_err_entry ee = {0};
		if (fi_cq_readerr(f->cq, &ee, 0) < 0) return fail(err, errlen, -FI_EOTHER, "fi_cq_readerr");
		out[0].ctx = (uint64_t)ee.op_context;
		out[0].flags = ee.flags;
		snprintf(err, errlen, "%s (provider: %s)", fi_strerror(ee.err),
			fi_cq_strerror(f->cq, ee.prov_errno, ee.err_data, NULL, 0));
		return ee.err ? -ee.err : -FI_EOTHER;
	}
	if (got < 0) return fail(err, errlen, (int)got, "fi_cq_read");
	for (ssize_t i = 0; i < got; i++) {
		out[i].ctx = (uint64_t)e[i].op_context;
		out[i].len = e[i].len;
		out[i].flags = e[i].flags;
	}
	return (int)got;
}

void fe_close(fe *f) {
	if (!f) return;
	if (f->ep) fi_close(&f->ep->fid);
	if (f->pep) fi_close(&f->pep->fid);
	if (f->cq) fi_close(&f->cq->fid);
	if (f->eq) fi_close(&f->eq->fid);
	if (f->dom && --f->dom->refs == 0) {
		if (f->dom->domain) fi_close(&f->dom->domain->fid);
		if (f->dom->fabric) fi_close(&f->dom->fabric->fid);
		free(f->dom);
	}
	if (f->info) fi_freeinfo(f->info);
	if (f->pinfo) fi_freeinfo(f->pinfo);
	free(f);
}
