package netdial

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestRetryWaitsForListener: a listener that starts after the first
// refusal is still reached.
func TestRetryWaitsForListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() {
		time.Sleep(100 * time.Millisecond)
		l2, err := net.Listen("tcp", addr)
		if err != nil {
			return // port taken meanwhile: Retry then times out below
		}
		defer l2.Close()
		if c, err := l2.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Retry(ctx, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestRetryDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Retry(ctx, addr, 100*time.Millisecond)
	if !errors.Is(err, transport.ErrClosed) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Retry = %v; want ErrClosed naming %s", err, addr)
	}
}
