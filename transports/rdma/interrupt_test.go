package rdma

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestInterrupter: before settle, ctx's end interrupts a blocked read
// (and a connection added later at once); settle reports it, and with
// clear the connections work again. After settle, ctx's end does
// nothing.
func TestInterrupter(t *testing.T) {
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	t.Run("ended first", func(t *testing.T) {
		a, peer := pair()
		late, latePeer := pair()
		ctx, cancel := context.WithCancel(context.Background())
		i := interruptOn(ctx, a)
		read := make(chan error, 1)
		go func() { _, err := a.Read(make([]byte, 1)); read <- err }()
		cancel()
		if err := <-read; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after ctx's end: %v; want the deadline", err)
		}
		i.add(late)
		if _, err := late.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read on a connection added after ctx's end: %v; want the deadline", err)
		}
		if !i.settle(true) {
			t.Fatal("settle did not report ctx's end")
		}
		for _, c := range [][2]net.Conn{{a, peer}, {late, latePeer}} {
			c[1].Write([]byte{1})
			c[0].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c[0], make([]byte, 1)); err != nil {
				t.Fatalf("read after settle(true): %v", err)
			}
		}
	})
	t.Run("settled first", func(t *testing.T) {
		a, peer := pair()
		ctx, cancel := context.WithCancel(context.Background())
		i := interruptOn(ctx, a)
		if i.settle(false) {
			t.Fatal("settle reported an end that did not come")
		}
		cancel()
		go peer.Write([]byte{1})
		if _, err := io.ReadFull(a, make([]byte, 1)); err != nil {
			t.Fatalf("read after settle and ctx's end: %v", err)
		}
	})
}
