//go:build linux && cgo && !nolibfabric

package fabric

/*
#cgo LDFLAGS: -lfabric
#include <stdlib.h>
#include <rdma/fabric.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// Supported reports whether this build can open a fabric.
const Supported = true

// Registration access bits.
const (
	AccessSend        Access = C.FI_SEND
	AccessRecv        Access = C.FI_RECV
	AccessWrite       Access = C.FI_WRITE
	AccessRemoteWrite Access = C.FI_REMOTE_WRITE
)

// tick bounds each blocking C call, so contexts are checked this often.
const tick = 20

const errLen = 512

type errBuf [errLen]C.char

func (b *errBuf) ptr() *C.char { return &b[0] }
func (b *errBuf) err(what string, rc C.int) error {
	msg := C.GoString(b.ptr())
	if msg == "" {
		msg = C.GoString(C.fe_strerror(rc))
	}
	return fmt.Errorf("%s: %s", what, msg)
}

// Listener is a passive endpoint waiting for one connection.
type Listener struct {
	f    *C.fe
	prov string
	dom  *domain
}

// domain is what the endpoints of one resource domain share on the Go
// side: the registrations, closed with the last of them.
type domain struct {
	mu   sync.Mutex
	refs int // endpoints open
	mrs  []*MR
}

// Listen opens a passive endpoint of provider prov on host, at a port the
// provider picks (Port), in a fabric and domain of its own.
func Listen(prov, host string) (*Listener, error) { return listen(prov, host, nil) }

// ListenShared opens another passive endpoint of with's provider on host,
// in with's fabric: the endpoints both accept share one domain, so
// memory registered through either serves both (with's must be accepted
// first: it opens the domain).
func ListenShared(with *Listener, host string) (*Listener, error) {
	if with.f == nil {
		return nil, errors.New("listen: the listener to share with was closed")
	}
	return listen(with.prov, host, with)
}

func listen(prov, host string, with *Listener) (*Listener, error) {
	cp, ch := C.CString(prov), C.CString(host)
	defer C.free(unsafe.Pointer(cp))
	defer C.free(unsafe.Pointer(ch))
	var eb errBuf
	var f, share *C.fe
	dom := &domain{}
	if with != nil {
		share, dom = with.f, with.dom
	}
	if rc := C.fe_listen(cp, ch, share, &f, eb.ptr(), errLen); rc != 0 {
		C.fe_close(f)
		return nil, eb.err("listen with provider "+prov, rc)
	}
	return &Listener{f: f, prov: prov, dom: dom}, nil
}

// warmUp is Warm's work: fe_warm, which cannot be interrupted.
func warmUp(prov string) {
	cp := C.CString(prov)
	defer C.free(unsafe.Pointer(cp))
	C.fe_warm(cp)
}

// Port is the port the listener is bound to.
func (l *Listener) Port() (int, error) {
	var eb errBuf
	var p C.int
	if rc := C.fe_port(l.f, &p, eb.ptr(), errLen); rc != 0 {
		return 0, eb.err("port", rc)
	}
	return int(p), nil
}

// Accept waits for a connection request whose parameter data check
// accepts (others are rejected and waiting goes on), builds its endpoint,
// runs prepare on it (register memory, post receives) and accepts it.
// The listener is used up either way: Close it. The endpoint keeps the
// listener's port open until StopListening (or its Close).
func (l *Listener) Accept(ctx context.Context, check func(param []byte) bool, prepare func(*Endpoint) error) (*Endpoint, error) {
	var eb errBuf
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var req *C.fe_info
		param := make([]byte, 256)
		n := C.size_t(len(param))
		rc := C.fe_wait_connreq(l.f, tick, &req, (*C.uint8_t)(unsafe.Pointer(&param[0])), &n, eb.ptr(), errLen)
		if rc < 0 {
			return nil, eb.err("wait for a connection", rc)
		}
		if rc == 0 {
			continue
		}
		if !check(param[:n]) {
			C.fe_reject(l.f, req)
			continue
		}
		if rc := C.fe_accept_prepare(l.f, req, eb.ptr(), errLen); rc != 0 {
			return nil, eb.err("accept", rc)
		}
		e := &Endpoint{f: l.f, prov: l.prov, dom: l.dom}
		l.dom.join()
		l.f = nil // the endpoint owns the fabric now
		e.caps = caps(e.f)
		if err := prepare(e); err != nil {
			e.Close()
			return nil, err
		}
		if rc := C.fe_accept(e.f, eb.ptr(), errLen); rc != 0 {
			e.Close()
			return nil, eb.err("accept", rc)
		}
		if err := e.waitConnected(ctx); err != nil {
			e.Close()
			return nil, err
		}
		return e, nil
	}
}

// Close releases the listener (a no-op once Accept took it over).
func (l *Listener) Close() {
	if l.f != nil {
		C.fe_close(l.f)
		l.f = nil
	}
}

// Endpoint is one connected message endpoint.
type Endpoint struct {
	mu   sync.Mutex // guards f against Close
	f    *C.fe
	prov string
	caps Caps
	dom  *domain
}

func (d *domain) join() {
	d.mu.Lock()
	d.refs++
	d.mu.Unlock()
}

// leave drops an endpoint; the last one closes the registrations.
func (d *domain) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refs--; d.refs > 0 {
		return
	}
	for _, m := range d.mrs {
		C.fe_mr_close(m.mr)
	}
	d.mrs = nil
}

// Connect connects to a listener of provider prov at host:port, sending
// param (at most 256 bytes) with the request, in a fabric and domain of
// its own.
func Connect(ctx context.Context, prov, host string, port int, param []byte) (*Endpoint, error) {
	return connect(ctx, prov, host, port, param, nil)
}

// ConnectShared connects another endpoint in with's domain (so memory
// registered through either serves both) to a listener at host:port.
func ConnectShared(ctx context.Context, with *Endpoint, host string, port int, param []byte) (*Endpoint, error) {
	with.mu.Lock()
	defer with.mu.Unlock()
	if with.f == nil {
		return nil, errors.New("connect: the endpoint to share with was closed")
	}
	return connect(ctx, with.prov, host, port, param, with)
}

func connect(ctx context.Context, prov, host string, port int, param []byte, with *Endpoint) (*Endpoint, error) {
	cp, ch, cs := C.CString(prov), C.CString(host), C.CString(strconv.Itoa(port))
	defer C.free(unsafe.Pointer(cp))
	defer C.free(unsafe.Pointer(ch))
	defer C.free(unsafe.Pointer(cs))
	cparam := C.CBytes(param)
	defer C.free(cparam)
	var eb errBuf
	var f, share *C.fe
	dom := &domain{}
	if with != nil {
		share, dom = with.f, with.dom
	}
	if rc := C.fe_connect(cp, ch, cs, (*C.uint8_t)(cparam), C.size_t(len(param)), share, &f, eb.ptr(), errLen); rc != 0 {
		C.fe_close(f)
		return nil, eb.err(fmt.Sprintf("connect to %s:%d with provider %s", host, port, prov), rc)
	}
	e := &Endpoint{f: f, prov: prov, dom: dom}
	dom.join()
	e.caps = caps(f)
	if err := e.waitConnected(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Endpoint) waitConnected(ctx context.Context) error {
	var eb errBuf
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc := C.fe_wait_connected(e.f, tick, eb.ptr(), errLen)
		if rc == 1 {
			return nil
		}
		if rc < 0 {
			return eb.err("connect", rc)
		}
	}
}

func caps(f *C.fe) Caps {
	var c C.fe_caps
	C.fe_get_caps(f, &c)
	m := uint64(c.mr_mode)
	return Caps{Provider: C.GoString(&c.prov[0]), Domain: C.GoString(&c.domain[0]), MRMode: m,
		Local: m&C.FI_MR_LOCAL != 0, VirtAddr: m&C.FI_MR_VIRT_ADDR != 0, ProvKey: m&C.FI_MR_PROV_KEY != 0,
		SAW: c.saw != 0, DeliveryComplete: c.delivery_complete != 0,
		TxSize: int(c.tx_size), RxSize: int(c.rx_size), KeySize: int(c.key_size)}
}

// Caps is what the endpoint's provider offers.
func (e *Endpoint) Caps() Caps { return e.caps }

// MR is one memory registration.
type MR struct {
	mr   unsafe.Pointer
	desc unsafe.Pointer
	key  uint64
	base uintptr
	size int
}

// Key is the registration's key, to give the peer.
func (m *MR) Key() uint64 { return m.key }

// Base is the address a peer writes to for mem[0] (see Caps.VirtAddr).
func (m *MR) Base(virtAddr bool) uint64 {
	if virtAddr {
		return uint64(m.base)
	}
	return 0
}

// Register registers mem (memory outside the Go heap: a mapping) in the
// endpoint's domain, until the last endpoint of the domain is closed: it
// serves every endpoint of the domain. key is used unless the provider
// picks keys.
func (e *Endpoint) Register(mem []byte, access Access, key uint64) (*MR, error) {
	if len(mem) == 0 {
		return nil, errors.New("register: empty memory")
	}
	var eb errBuf
	m := &MR{base: uintptr(unsafe.Pointer(&mem[0])), size: len(mem)}
	var k C.uint64_t
	// mem is a mapping, not Go heap: it may be handed to C and kept there.
	rc := C.fe_mr_reg(e.f, unsafe.Pointer(&mem[0]), C.size_t(len(mem)), C.uint64_t(access), C.uint64_t(key),
		&m.mr, &k, &m.desc, eb.ptr(), errLen)
	if rc != 0 {
		return nil, eb.err(fmt.Sprintf("register %d bytes", len(mem)), rc)
	}
	m.key = uint64(k)
	e.dom.mu.Lock()
	e.dom.mrs = append(e.dom.mrs, m)
	e.dom.mu.Unlock()
	return m, nil
}

// local returns the address and descriptor of b, which lies inside m.
func (m *MR) local(b []byte) (unsafe.Pointer, unsafe.Pointer, error) {
	p := uintptr(unsafe.Pointer(&b[0]))
	if p < m.base || p+uintptr(len(b)) > m.base+uintptr(m.size) {
		return nil, nil, errors.New("buffer outside its registration")
	}
	// b lies inside the registered mapping (checked above), not Go heap.
	return unsafe.Pointer(&b[0]), m.desc, nil
}

func post(rc C.int, what string) error {
	switch {
	case rc == 0:
		return nil
	case rc == -C.FI_EAGAIN:
		return ErrAgain
	}
	return fmt.Errorf("%s: %s (%d)", what, C.GoString(C.fe_strerror(rc)), int(rc))
}

// Write posts an RMA write of b (inside m) to the peer's raddr under key.
func (e *Endpoint) Write(b []byte, m *MR, raddr, key, ctx uint64) error {
	p, d, err := m.local(b)
	if err != nil {
		return err
	}
	return post(C.fe_write(e.f, p, C.size_t(len(b)), d, C.uint64_t(raddr), C.uint64_t(key), C.uint64_t(ctx)), "fi_write")
}

// Send posts a message from b (inside m).
func (e *Endpoint) Send(b []byte, m *MR, ctx uint64) error {
	p, d, err := m.local(b)
	if err != nil {
		return err
	}
	return post(C.fe_send(e.f, p, C.size_t(len(b)), d, C.uint64_t(ctx)), "fi_send")
}

// Recv posts a receive buffer b (inside m).
func (e *Endpoint) Recv(b []byte, m *MR, ctx uint64) error {
	p, d, err := m.local(b)
	if err != nil {
		return err
	}
	return post(C.fe_recv(e.f, p, C.size_t(len(b)), d, C.uint64_t(ctx)), "fi_recv")
}

// Poll fills out with completions, waiting up to wait for the first. A
// failed operation is an *OpError.
func (e *Endpoint) Poll(out []Completion, wait time.Duration) (int, error) {
	var eb errBuf
	var cs [64]C.fe_comp
	n := min(len(out), len(cs))
	rc := C.fe_poll(e.f, &cs[0], C.int(n), C.int(wait.Milliseconds()), eb.ptr(), errLen)
	if rc < 0 {
		return 0, &OpError{Ctx: uint64(cs[0].ctx), Code: int(rc), Msg: C.GoString(eb.ptr())}
	}
	for i := range int(rc) {
		out[i] = Completion{Ctx: uint64(cs[i].ctx), Len: uint64(cs[i].len), Flags: uint64(cs[i].flags)}
	}
	return int(rc), nil
}

// StopListening closes the listening ports eps (accepted endpoints of
// one fabric) still hold from their listeners, once each has rejected
// the connection requests queued on it (strangers': each holds a
// socket). Call it once the last endpoint of the fabric is accepted: on
// net a stranger's connection to a closed listener, half-way through its
// request, is touched again by any later wait for a connection in the
// fabric (shim.c, fe_stop_listening). It returns how many requests were
// rejected.
func StopListening(eps ...*Endpoint) int {
	n := 0
	for _, e := range eps {
		e.mu.Lock()
		if e.f != nil {
			n += int(C.fe_drain_connreqs(e.f))
		}
		e.mu.Unlock()
	}
	for _, e := range eps {
		e.mu.Lock()
		if e.f != nil {
			C.fe_stop_listening(e.f)
		}
		e.mu.Unlock()
	}
	return n
}

// Close releases the endpoint and, if it is the last endpoint of its
// domain, the registrations. No call may be in flight on it.
func (e *Endpoint) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return
	}
	e.dom.leave()
	C.fe_close(e.f)
	e.f = nil
}

// ForceDeliveryComplete makes later Listen and Connect calls open
// endpoints without FI_ORDER_SAW, with FI_DELIVERY_COMPLETE writes (for
// tests of that path where providers have both; not for concurrent use).
func ForceDeliveryComplete(on bool) {
	if on {
		C.fe_force_dc = 1
	} else {
		C.fe_force_dc = 0
	}
}

// Providers returns which of names offer an FI_EP_MSG endpoint with FI_RMA
// on host, each with the reason when not.
func Providers(host string, names ...string) map[string]error {
	out := map[string]error{}
	for _, n := range names {
		l, err := Listen(n, host)
		if err == nil {
			l.Close()
		}
		out[n] = err
	}
	return out
}
