package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
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

// TestHeldAfterPluginExit: a plugin process that hands its listening
// socket over (Listen) and exits at once leaves the port bound by the
// host: after CloseHoldingListeners no one else can bind it, after
// Close anyone can. Before, the host closed the channel when it saw the
// process gone, with the socket still in it.
func TestHeldAfterPluginExit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := launch(t, "ferry-transport-holdexit", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = tr.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: schema.Config{"address": addr}})
	if !errors.Is(err, transport.ErrPluginGone) {
		t.Fatalf("Open in a plugin that exits = %v; want ErrPluginGone", err)
	}
	if err := transport.CloseHolding(tr); err != nil {
		t.Fatal(err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("%s was free after its plugin handed it over and exited", addr)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after Close %s is still bound: %v", addr, err)
	}
	ln.Close()
}
