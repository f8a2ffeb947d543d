package rdma

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestAcceptOneEndedWinner: when acceptOne's context ends while a
// connection is being admitted, and that admission then succeeds, the
// caller gets either that connection or the context's error; with the
// error, the connection is closed (its peer reads EOF). Before, a winner
// that came after the wait ended stayed open in the result channel
// until the garbage collector found it: the peer (a source whose
// urgent channel was just accepted) waited on a connection nobody read.
func TestAcceptOneEndedWinner(t *testing.T) {
	s := &session{log: hclog.NewNullLogger(), cfg: config{connectTimeout: 10 * time.Second}}
	ended := 0
	for range 20 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		// The wait ends while the admission is under way; then it wins.
		admit := func(c *net.TCPConn) (admitted, error) { cancel(); return admitted{sc: c}, nil }
		c, _, err := s.acceptOne(ctx, ln, admit, nil)
		ln.Close()
		if err == nil {
			c.Close() // the winner, taken: nothing to check
			peer.Close()
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("acceptOne = %v; want the context's error or the connection", err)
		}
		ended++
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = peer.Read(make([]byte, 1))
		peer.Close()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("acceptOne returned %v, and its admitted connection is still open (the peer's read: %v)", context.Canceled, err)
		}
	}
	t.Logf("%d of 20 waits ended before their winner", ended)
}

// TestAcceptOneAdmission: acceptOne returns the winner's own admission
// (the tag its HELLO named, for openReceive) with its connection, while
// the admissions of other connections, refused or late, go with them.
// Before, openReceive kept every admitted connection's tag in a map for
// the whole Open (one entry per try of the source's, never pruned) and
// looked the winner up in it.
func TestAcceptOneAdmission(t *testing.T) {
	s := &session{log: hclog.NewNullLogger(), cfg: config{connectTimeout: 10 * time.Second}}
	for round := range 8 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		// Eight peers name a tag each; only the round's is admitted.
		peers := map[string]byte{}
		var conns []net.Conn
		for i := range 8 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			peers[c.LocalAddr().String()] = byte(i)
			conns = append(conns, c)
		}
		admit := func(c *net.TCPConn) (admitted, error) {
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return admitted{}, err
			}
			if int(b[0]) != round {
				return admitted{tag: transport.Tag{b[0]}}, errors.New("not this round's")
			}
			return admitted{sc: c, tag: transport.Tag{b[0]}}, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, a, err := s.acceptOne(ctx, ln, admit, nil)
		cancel()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := peers[c.RemoteAddr().String()]; a.tag != (transport.Tag{want}) || a.sc != c || int(want) != round {
			t.Errorf("round %d: acceptOne returned the connection of peer %d with tag %x; want peer %d's own", round, want, a.tag[:1], round)
		}
		c.Close()
		for _, p := range conns {
			p.Close()
		}
	}
}
