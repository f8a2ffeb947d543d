//go:build linux

package tcp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestSourceAuthDropped: a destination that drops a connection during
// the handshake without a TLS alert (its handshake bound passed on a
// loaded or emulated host, its Open ended, too many connections at
// once) is not said to have refused the job's credentials, as rdma's
// source already said (sessionbase.AuthFailed). Seen under emulated KVM:
// the destination's 3 s handshake bound passed, and the source's error
// blamed the credentials. A destination that does refuse them still
// says so. The class stays transport.ErrUnauthenticated.
func TestSourceAuthDropped(t *testing.T) {
	const refused, dropped = "refused this job's credentials", "closed the connection during authentication"
	t.Run("dropped", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		defer func() { ln.Close(); <-done }()
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		src := newVM(t, testLayout)
		send := New(testLogger(t))
		defer send.Close()
		err = send.Open(ctxT(t), src.request(transport.RoleSend, cfg(ln.Addr().String(), 2, "lz4")))
		t.Logf("the source's Open: %v", err)
		if err == nil || !strings.Contains(err.Error(), dropped) || strings.Contains(err.Error(), refused) {
			t.Fatalf("the source's Open = %v; want it to say %q, not %q", err, dropped, refused)
		}
		if !errors.Is(err, transport.ErrUnauthenticated) {
			t.Fatalf("the source's Open = %v; want class ErrUnauthenticated", err)
		}
	})
	t.Run("stranger destination", func(t *testing.T) {
		_, otherRecv, err := transport.MintCredentials(false)
		if err != nil {
			t.Fatal(err)
		}
		src, dst := newVM(t, testLayout), newVM(t, testLayout)
		addr := freeAddr(t)
		send, recv := New(testLogger(t)), New(testLogger(t))
		defer send.Close()
		defer recv.Close()
		ctx := ctxT(t)
		req := dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))
		req.Credentials = otherRecv
		rctx, rcancel := context.WithCancel(ctx)
		rdone := make(chan struct{})
		go func() { defer close(rdone); recv.Open(rctx, req) }()
		err = send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4")))
		rcancel() // the destination would wait on for its own source
		<-rdone
		t.Logf("the source's Open: %v", err)
		if err == nil || !strings.Contains(err.Error(), refused) {
			t.Fatalf("the source's Open = %v; want it to say %q", err, refused)
		}
		if !errors.Is(err, transport.ErrUnauthenticated) {
			t.Fatalf("the source's Open = %v; want class ErrUnauthenticated", err)
		}
	})
}
