package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// TestIntruder is vmm/e2e's TestMigrateIntruder without KVM: through the
// engine and the TCP transport, a third source with credentials of its
// own sends to a waiting destination first and is refused; the real
// source then migrates, and the destination holds the real source's RAM.
func TestIntruder(t *testing.T) {
	const size = 16 << 20
	src, intruder, dst := newMemVM(t, size, true), newMemVM(t, size, true), newMemVM(t, size, false)
	for i := range intruder.mem {
		intruder.mem[i] ^= 0x5a
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := schema.Config{"listen": "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "streams": int64(2),
		"connect_timeout": int64(10 * time.Second)}
	l.Close()
	srcCreds, dstCreds, _ := transport.MintCredentials(false)
	stranger, _, _ := transport.MintCredentials(false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		_, rerr = engine.Receive(ctx, dst, tcp.New(nil), engine.Options{Transport: cfg, Credentials: dstCreds})
	})
	_, err := engine.Send(ctx, intruder, tcp.New(nil), engine.Options{Transport: cfg, Credentials: stranger})
	if !errors.Is(err, transport.ErrUnauthenticated) {
		t.Fatalf("the intruder's Send = %v; want ErrUnauthenticated", err)
	}
	t.Logf("the intruder: %v", err)
	rep, err := engine.Send(ctx, src, tcp.New(nil), engine.Options{Transport: cfg, Credentials: srcCreds})
	wg.Wait()
	if err != nil || rerr != nil {
		t.Fatalf("the real migration: send %v, receive %v", err, rerr)
	}
	if rep.Encryption != engine.EncryptionTLS {
		t.Errorf("report says encryption %q, want %q", rep.Encryption, engine.EncryptionTLS)
	}
	if !bytes.Equal(dst.mem, src.mem) {
		t.Fatal("the destination does not hold the real source's memory")
	}
}
