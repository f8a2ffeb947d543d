package tcp

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// countConn counts the writes that reach the socket.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestRecordConn: records written while held reach the peer in order,
// in at most one write per recordBuffer bytes; writes outside a hold go
// out at once; reads come through the read-ahead buffer intact.
func TestRecordConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := &countConn{Conn: a}
	rc := newRecordConn(cc)
	var want bytes.Buffer
	got := make(chan []byte)
	const total = 1<<20 + 5 + 3
	go func() {
		buf := make([]byte, total)
		io.ReadFull(b, buf)
		got <- buf
	}()
	write := func(p []byte) {
		if _, err := rc.Write(p); err != nil {
			t.Fatal(err)
		}
		want.Write(p)
	}
	write([]byte("hello"))
	rc.begin()
	for i := range 64 { // a batch as TLS writes it: 16 KiB records
		write(bytes.Repeat([]byte{byte(i)}, 16<<10))
	}
	if err := rc.end(); err != nil {
		t.Fatal(err)
	}
	write([]byte("ack"))
	if buf := <-got; !bytes.Equal(buf, want.Bytes()) {
		t.Fatal("the peer read other bytes than were written")
	}
	if max := 1 + (1<<20)/recordBuffer + 1; cc.writes > max {
		t.Errorf("%d writes reached the socket, want at most %d", cc.writes, max)
	}

	go func() { b.Write(want.Bytes()) }()
	back := make([]byte, want.Len())
	if _, err := io.ReadFull(rc, back); err != nil || !bytes.Equal(back, want.Bytes()) {
		t.Fatalf("read back: %v", err)
	}
}
