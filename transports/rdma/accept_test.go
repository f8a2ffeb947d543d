package rdma

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
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
		admit := func(c *net.TCPConn) (net.Conn, error) { cancel(); return c, nil }
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
