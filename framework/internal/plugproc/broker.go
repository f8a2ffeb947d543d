package plugproc

import (
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// go-plugin's broker runs one stream per plugin process, on which each
// side offers the other connections (ConnInfo: "dial id N at this
// socket"). The host offers them (a hint provider's Host is served under
// an id the plugin dials) but never dials one of the plugin's, so
// nothing the plugin sends on that stream is of use to it; and
// go-plugin's host side starts a goroutine that lives 5 s for every
// offer (and keeps an entry for every knock, for good), so a plugin that
// floods the stream (TestBrokerFlood, framework/hint) could make the VMM
// run thousands of goroutines. The host therefore reads and drops
// whatever arrives on that stream:
//
//	plugin ── ConnInfo, ConnInfo, ... ──► brokerStream.RecvMsg: dropped
//	                                      go-plugin's GRPCBroker.Run: waits, ends with the stream
//	host ── ConnInfo (serve a Host under id) ──► plugin: unchanged
//
// A kind that needs the host to dial a plugin's broker id must change this.

// brokerStartStream is go-plugin's broker stream method.
const brokerStartStream = "/plugin.GRPCBroker/StartStream"

// dropBrokerOffers is the host's stream interceptor: on the broker's
// stream it drops what the plugin sends.
func dropBrokerOffers(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != brokerStartStream {
		return s, err
	}
	return brokerStream{s}, nil
}

// brokerStream is the broker's stream with nothing received.
type brokerStream struct{ grpc.ClientStream }

// RecvMsg implements grpc.ClientStream: it returns only when the stream
// ends, dropping every message before that.
func (s brokerStream) RecvMsg(m any) error {
	for {
		if err := s.ClientStream.RecvMsg(m); err != nil {
			return err
		}
	}
}

// A service the host serves to the plugin under a broker id (a hint
// provider's Host) listens on a socket only the plugin can reach, but
// the plugin may dial it as often as it likes, and go-plugin's
// AcceptAndServe takes every connection: a gRPC server keeps each one,
// with a goroutine, for up to two minutes of TLS handshake, so a plugin
// that dials in a loop would run the VMM out of descriptors
// (TestHostConnFlood, framework/hint). ServeBroker keeps at most
// maxBrokerConns connections at a time and closes any other as soon as
// it is accepted:
//
//	plugin: broker.Dial(id) ───────────────► accepted, served (the protocol's one)
//	plugin: net.Dial, net.Dial, ... ──────► accepted and closed at once, past maxBrokerConns

// maxBrokerConns is how many connections a service ServeBroker serves
// keeps at a time: the plugin's one gRPC connection, and one more while
// it reconnects before the host saw the first one closed.
const maxBrokerConns = 2

// ServeBroker serves the server newServer makes under broker id id, as
// go-plugin's GRPCBroker.AcceptAndServe does (the broker tells the
// plugin where to dial; the server speaks TLS with tlsConfig, the host's
// config of the process, Process.TLS), on a listener that keeps at most
// maxBrokerConns connections, and takes the plugin's calls at a bounded
// rate (ratelimit.go). served is closed once the server stopped (its
// Stop) and the listener is closed.
func ServeBroker(broker *plugin.GRPCBroker, id uint32, tlsConfig *tls.Config,
	newServer func([]grpc.ServerOption) *grpc.Server) (srv *grpc.Server, served <-chan struct{}, err error) {
	ln, err := broker.Accept(id)
	if err != nil {
		return nil, nil, err
	}
	opts := newCallLimiter(BrokerCallRate, brokerCallBurst).serverOptions()
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	srv = newServer(opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(&limitListener{Listener: ln, slots: make(chan struct{}, maxBrokerConns)}) // closes ln
	}()
	return srv, done, nil
}

// limitListener is a listener that hands out at most cap(slots)
// connections at a time and closes the others it accepts.
type limitListener struct {
	net.Listener
	slots chan struct{} // one per connection handed out and not closed
}

// Accept implements net.Listener.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, free: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			c.Close()
		}
	}
}

// limitConn gives its slot back when it is closed.
type limitConn struct {
	net.Conn
	free func()
}

// Close implements net.Conn.
func (c *limitConn) Close() error {
	c.free()
	return c.Conn.Close()
}
