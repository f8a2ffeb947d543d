package loopback

import (
	"bufio"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// TestCloseNotHeldByPeerNotReading: the peer read this side's BYE, then
// reads nothing more, as a loopback peer whose reader is busy closing
// its own end (or a peer that froze). Close must still return at once:
// its BYE went out, and ending the connection needs nothing from the
// peer. Before, Close ended the session with the TLS connection's Close,
// whose close_notify alert waits for the peer to read it (crypto/tls
// gives it 5 s) on net.Pipe, which buffers nothing: two sides closing
// at once, each reader gone or writing its own alert, each waited those
// 5 s for the other. The engine's TestPostcopySettledReconnectBounded
// failed so, once in a loaded run: its destination's Close, as its
// SETTLED died, took 5.002 s, longer than the reconnect_timeout it
// checks (reproduced every time with a delay before the receiver
// answers FLUSH).
//
// The wait below is no measurement: Close returns in microseconds now,
// and before it could not return before crypto/tls's 5 s deadline.
func TestCloseNotHeldByPeerNotReading(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, dc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "ram")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(framework.PageSize); err != nil {
		t.Fatal(err)
	}
	ram := []transport.RAMRegion{{Size: framework.PageSize}}
	snd, rcv := NewPipe()
	opened := make(chan error, 1)
	go func() {
		opened <- rcv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, RAM: ram, Files: []*os.File{f}, Credentials: dc})
	}()
	// The peer: a sender's connection, as Open makes it, read by the
	// test alone.
	req := transport.OpenRequest{Role: transport.RoleSend, RAM: ram, Files: []*os.File{f}, Credentials: sc}
	o, err := snd.options(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sc.TLSConfig(transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := snd.connectSend(ctx, req, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	bye := make(chan error, 1)
	go func() { bye <- readUntilBye(peer) }() // then it stops reading

	closed := make(chan struct{})
	go func() { defer close(closed); rcv.Close() }()
	if err := <-bye; err != nil {
		t.Fatalf("the peer read no BYE: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Error("Close still waits, 3 s after its BYE was read, for a peer that reads nothing more")
		if nc, ok := peer.(interface{ NetConn() net.Conn }); ok {
			nc.NetConn().Close() // lets that Close return
		}
		<-closed
	}
}

// readUntilBye reads frames from c until BYE.
func readUntilBye(c net.Conn) error {
	br := bufio.NewReader(c)
	buf := make([]byte, maxBody)
	for {
		typ, _, err := readFrame(br, buf)
		if err != nil {
			return err
		}
		if typ == frameBye {
			return nil
		}
	}
}
