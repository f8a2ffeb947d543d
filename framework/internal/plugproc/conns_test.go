package plugproc

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestHostConnsCloseAll: closeAll closes every connection dial made,
// also one gRPC already closed (a second Close returns once the socket
// is closed, not at once), and no dial succeeds after it; for the Unix
// socket a Go plugin listens on here, and for the TCP address go-plugin
// uses on Windows or a plugin not written in Go may announce.
func TestHostConnsCloseAll(t *testing.T) {
	t.Run("unix", func(t *testing.T) {
		ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "plugin"))
		if err != nil {
			t.Fatal(err)
		}
		testHostConnsCloseAll(t, ln)
	})
	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		testHostConnsCloseAll(t, ln)
	})
}

// testHostConnsCloseAll is TestHostConnsCloseAll with the plugin
// listening on ln.
func testHostConnsCloseAll(t *testing.T, ln net.Listener) {
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	h := newHostConns(nil)
	if _, err := h.dial(context.Background(), "unused"); err == nil {
		t.Fatal("dial before the address was known succeeded")
	}
	h.setAddr(ln.Addr())
	first, err := h.dial(context.Background(), "unused")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.dial(context.Background(), "unused"); err != nil {
		t.Fatal(err)
	}
	first.Close() // as gRPC's own close
	h.closeAll()
	h.closeAll() // idempotent
	for range 2 {
		var peer net.Conn
		select {
		case peer = <-accepted:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener accepted no connection in 10 s")
		}
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("the plugin's end read %v, want EOF: the host's end is still open after closeAll", err)
		}
		peer.Close()
	}
	if _, err := h.dial(context.Background(), "unused"); !errors.Is(err, errConnsClosed) {
		t.Errorf("dial after closeAll: %v, want %v", err, errConnsClosed)
	}
}

// TestHostConnsForgetClosed: a connection gRPC closed is no longer kept:
// a plugin whose connection gRPC redials again and again (it closes
// each one it accepts) costs the host no memory per connection for the
// process's life.
func TestHostConnsForgetClosed(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "plugin"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	h := newHostConns(nil)
	defer h.closeAll()
	h.setAddr(ln.Addr())
	for range 100 {
		c, err := h.dial(context.Background(), "unused")
		if err != nil {
			t.Fatal(err)
		}
		c.Close() // as gRPC's own close
	}
	if n := h.kept(); n != 0 {
		t.Errorf("%d connections kept after gRPC closed all 100 it dialed, want 0", n)
	}
}

// kept is how many connections h keeps.
func (h *hostConns) kept() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.open)
}
