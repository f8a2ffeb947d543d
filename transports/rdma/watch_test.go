package rdma

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestWatchPeer: the setup's watch of the control channel (watch.go),
// on real connections, plain and TLS. It calls gone only when the peer
// closed or reset the connection; bytes the peer sent are left for the
// reader, whole, whether or not the peer closed after them; stop clears
// the read deadline it used, so the session can read on. A peer that
// closes its TLS connection (close_notify, a record, then FIN) looks
// like one that sent data: not seen, a limit watchPeer states; Ferry's
// sources close the socket itself.
func TestWatchPeer(t *testing.T) {
	for _, c := range []struct {
		name  string
		tls   bool
		send  string // what the peer writes first
		end   string // then: "close" (the socket), "reset", "close tls" (close_notify first) or "" (stays)
		gone  bool
		after string // what the reader then reads, up to EOF if the peer ended
	}{
		{name: "close", end: "close", gone: true},
		{name: "reset", end: "reset", gone: true},
		{name: "data", send: "first frame", after: "first frame"},
		{name: "data then close", send: "first frame", end: "close", after: "first frame"},
		{name: "nothing yet", after: "sent after stop"},
		{name: "tls close", tls: true, end: "close", gone: true},
		{name: "tls close_notify", tls: true, end: "close tls"},
		{name: "tls data", tls: true, send: "first frame", after: "first frame"},
		{name: "tls data then close", tls: true, send: "first frame", end: "close", after: "first frame"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, rd, peerRaw, peer := connPair(t, c.tls)
			goneCh := make(chan struct{})
			w := watchPeer(raw, func() { close(goneCh) })
			if c.send != "" {
				if _, err := peer.Write([]byte(c.send)); err != nil {
					t.Fatal(err)
				}
			}
			switch c.end {
			case "close":
				peerRaw.Close()
			case "close tls":
				peer.Close()
			case "reset":
				peerRaw.SetLinger(0)
				peerRaw.Close()
			}
			bound := time.NewTimer(5 * time.Second)
			defer bound.Stop()
			if c.gone {
				select {
				case <-goneCh:
				case <-bound.C:
					t.Fatal("the peer ended the connection; the watch did not call gone within 5 s")
				}
			} else if c.send != "" || c.end != "" {
				select { // the first byte ends the watch
				case <-w.done:
				case <-bound.C:
					t.Fatal("bytes arrived; the watch did not end within 5 s")
				}
			}
			if got := w.stop(); got != c.gone {
				t.Fatalf("stop() = %v; want %v", got, c.gone)
			}
			select {
			case <-goneCh:
				if !c.gone {
					t.Fatal("the watch called gone for a peer that did not end the connection")
				}
			default:
			}
			if c.after == "" {
				return
			}
			if c.send == "" {
				peer.Write([]byte(c.after))
			}
			// Bounded without a deadline of its own (stop must have
			// cleared the watch's): the socket closes after 5 s.
			cut := time.AfterFunc(5*time.Second, func() { raw.Close() })
			defer cut.Stop()
			got := make([]byte, len(c.after))
			if _, err := io.ReadFull(rd, got); err != nil || string(got) != c.after {
				t.Fatalf("the reader got %q, %v; want %q", got, err, c.after)
			}
			if c.end != "" {
				if n, err := rd.Read(got); n != 0 || !errors.Is(err, io.EOF) {
					t.Fatalf("after the data: %d bytes, %v; want EOF", n, err)
				}
			}
		})
	}
}

// connPair returns the two ends of a loopback TCP connection: this
// side's socket and what it reads from (the socket, or TLS over it as
// the destination's control channel), and the peer's socket and what it
// writes to. Reads and the handshake are bounded by the test's 20 s.
func connPair(t *testing.T, secure bool) (raw *net.TCPConn, rd net.Conn, peerRaw *net.TCPConn, peer net.Conn) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peerRaw, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	raw, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close(); peerRaw.Close() })
	if !secure {
		return raw, raw, peerRaw, peerRaw
	}
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sauth, err := sc.TLSConfig(transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	rauth, err := rc.TLSConfig(transport.RoleReceive)
	if err != nil {
		t.Fatal(err)
	}
	type secured struct {
		c   net.Conn
		err error
	}
	ch := make(chan secured, 1)
	go func() {
		c, err := transport.Secure(ctx, peerRaw, transport.RoleSend, sauth, false)
		ch <- secured{c, err}
	}()
	rd, err = transport.Secure(ctx, raw, transport.RoleReceive, rauth, false)
	s := <-ch
	if err != nil || s.err != nil {
		t.Fatalf("TLS: %v / %v", err, s.err)
	}
	return raw, rd, peerRaw, s.c
}
