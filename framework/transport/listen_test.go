package transport_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestListenBoundsQueue: a held port stays bound through the whole
// session with no one accepting, so strangers' connections queue on it
// until the next Open. Listen bounds that queue: past it a connection
// is not completed (the kernel drops its SYN), instead of the 4096 of
// the host's somaxconn.
func TestListenBoundsQueue(t *testing.T) {
	var listened transport.Listened
	listened.Add("127.0.0.1:0")
	ln, err := transport.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	defer func() {
		ln.Close()
		listened.Release()
	}()
	const limit = 64 // listenBacklog
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	misses := 0
	for range 4 * limit {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			if misses++; misses == 3 {
				break
			}
			continue
		}
		conns = append(conns, c)
	}
	// Linux completes backlog+1 connections; leave a little room.
	if len(conns) > limit+2 {
		t.Errorf("%d connections queued on a held socket no one accepts, want at most about %d", len(conns), limit+1)
	}
	if misses < 3 {
		t.Errorf("every one of %d dials completed", len(conns))
	}
}
