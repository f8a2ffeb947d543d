package plugproc

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hostConns dials the host's connections to the plugin's listener for
// gRPC (its dialer replaces go-plugin's, Start) and keeps them, so that
// Kill can close them itself. gRPC's ClientConn.Close, which go-plugin's
// Kill calls, may return before the socket is closed: when the plugin
// ended the connection first (it exits when asked, or died), the
// transport's reader goroutine is already closing it and Close leaves it
// to that goroutine, and the transport's writer goroutine closes it too
// once Close cancelled the ClientConn's context. Either may run after
// Kill returned: a load flake of TestKillClosesFiles ("fd 12
// (socket:[...]) open after Kill"), which a VMM that kills plugins for
// every migration must not have.
//
//	gRPC ── dial ──► hostConn (kept) ── net.Conn ──► plugin's socket
//	ClientConn ── stream ──► keepClient: the ClientConn kept
//	Kill (and a failed Start): go-plugin's Kill, then closeAll: every
//	      ClientConn kept closed, then every hostConn; a dial in flight
//	      ends, and nothing is dialed after
//
// It keeps the gRPC ClientConn go-plugin dialed them for, too, seen by
// a stream interceptor (keepClient), and closeAll closes it first:
// go-plugin's newGRPCClient, after it dialed, opens its stdio stream and
// returns that stream's error (any code but Unavailable and
// Unimplemented) without closing the ClientConn, and its Kill, with no
// client, leaves it be; the socket is closed, later dials are refused,
// but the ClientConn's goroutines (balancer, resolver, the address
// reconnecting) lived for the life of the VMM, a set for every failed
// start (TestStartFailedAfterDialClosesClientConn). A ClientConn on which
// no stream was ever opened is not kept: in go-plugin v1.8.0 only
// getGRPCMuxer fails between the dial and the stdio stream, and only
// with multiplexing on. A go-plugin that made another call first, or
// failed elsewhere first, would need this looked at again.
//
// What it cannot close: the connections of a service the host serves
// the plugin through go-plugin's broker (the hint kind's Host: its
// grpc.Server's Stop closes them, and returns only once each one's
// reader goroutine, which closes it too, has ended, so they need no
// hostConns: TestKillClosesHostFiles, framework/hint; Stop does not wait
// for a close by the server's keepalive goroutine, which with gRPC's
// defaults comes only after two hours idle and an unanswered ping), and
// a broker id the host dials (it dials none: broker.go). It dials what
// go-plugin's handshake named (plugin.Client.Start); go-plugin's
// connection multiplexing (GRPCBrokerMultiplex), which Start does not
// enable, would need its dialer.
type hostConns struct {
	ctx    context.Context // ends dials in flight at closeAll
	cancel context.CancelFunc
	wrap   func(net.Conn) net.Conn // nil, or wraps each connection dial hands gRPC (Config.wrapConn)

	mu      sync.Mutex
	addr    net.Addr               // the plugin's listener; nil until the handshake said it
	open    map[*hostConn]struct{} // dialed, and not closed yet
	clients []*grpc.ClientConn     // every ClientConn a stream was opened on (keepClient)
	closed  bool                   // closeAll ran: nothing more is dialed
	dialing sync.WaitGroup         // dials in flight
}

// errConnsClosed is a dial's error once the process was killed.
var errConnsClosed = errors.New("plugin killed: no more connections to it")

// newHostConns returns a hostConns whose dial hands gRPC wrap(c) for
// each connection c it dials; wrap nil hands c.
func newHostConns(wrap func(net.Conn) net.Conn) *hostConns {
	ctx, cancel := context.WithCancel(context.Background())
	return &hostConns{ctx: ctx, cancel: cancel, wrap: wrap}
}

// setAddr names the plugin's listener, once go-plugin's handshake said it.
func (h *hostConns) setAddr(addr net.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addr = addr
}

// dial is gRPC's dialer (grpc.WithContextDialer); the target is unused,
// as in go-plugin's own. ctx is gRPC's connect context; closeAll ends it
// too. What go-plugin's own did besides is kept: TLS is gRPC's (the
// transport credentials go-plugin sets from Process.TLS, not the
// dialer's), and a TCP address (a plugin not written in Go may announce
// one) gets keepalive, net.Dialer's default of 15 s where go-plugin
// turned on the system's; unlike go-plugin's, it honours ctx.
func (h *hostConns) dial(ctx context.Context, _ string) (net.Conn, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errConnsClosed
	}
	addr := h.addr
	if addr == nil {
		h.mu.Unlock()
		return nil, errors.New("plugin address not known yet (dialed before go-plugin's handshake)")
	}
	h.dialing.Add(1)
	h.mu.Unlock()
	defer h.dialing.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.ctx, cancel)()
	raw, err := (&net.Dialer{}).DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed { // killed while it dialed
		raw.Close()
		return nil, errConnsClosed
	}
	c := h.keepLocked(raw)
	if h.wrap != nil {
		return h.wrap(c), nil
	}
	return c, nil
}

// keepLocked keeps raw until it is closed; h.mu is held.
func (h *hostConns) keepLocked(raw net.Conn) *hostConn {
	c := &hostConn{Conn: raw}
	c.close = sync.OnceValue(func() error {
		err := raw.Close()
		h.forget(c) // once closed: a plugin gRPC redials often costs no memory
		return err
	})
	if h.open == nil {
		h.open = make(map[*hostConn]struct{})
	}
	h.open[c] = struct{}{}
	return c
}

// forget drops c, whose socket is closed.
func (h *hostConns) forget(c *hostConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.open, c)
}

// keepClient is the host's stream interceptor that keeps the ClientConn
// each stream is opened on (grpc.WithChainStreamInterceptor), so that
// closeAll closes it; it keeps each ClientConn once, however many
// streams are opened on it. Unary calls do not pass through it. After
// closeAll it closes cc and fails the stream with code Canceled, as
// gRPC fails a stream on a closed ClientConn, so that the kinds'
// errclass.Process.Fail takes it for the plugin gone: a call that passed
// its liveness check as Kill ran (TestStreamAfterKillCanceled).
func (h *hostConns) keepClient(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	h.mu.Lock()
	closed := h.closed
	if !closed && !slices.Contains(h.clients, cc) {
		h.clients = append(h.clients, cc)
	}
	h.mu.Unlock()
	if closed {
		cc.Close()
		return nil, status.Error(codes.Canceled, errConnsClosed.Error())
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// closeAll closes every ClientConn keepClient kept and every connection
// dial made, and waits for dials in flight, which it ends, so that none
// of the host's sockets to the plugin is open once it returns. Later
// dials fail. Idempotent. A ClientConn's Close may leave some of its
// goroutines to end a moment after it returned.
func (h *hostConns) closeAll() {
	h.mu.Lock()
	h.closed = true
	open, clients := h.open, h.clients
	h.open, h.clients = nil, nil
	h.mu.Unlock()
	h.cancel()
	h.dialing.Wait()
	for _, cc := range clients {
		cc.Close() // an error: go-plugin closed it already
	}
	for c := range open {
		c.Close()
	}
}

// hostConn is one connection dial made. Its Close returns only once the
// socket is closed, whoever called Close first: a net.Conn's Close
// returns at once for a caller that comes second, while the first may
// still wait for a read or write in flight to let go of the socket. It
// is kept (hostConns.open) until that first Close returned.
type hostConn struct {
	net.Conn
	close func() error // the first Close's result, once that Close returned
}

// Close implements net.Conn.
func (c *hostConn) Close() error { return c.close() }
