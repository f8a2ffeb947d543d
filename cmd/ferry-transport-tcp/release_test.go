package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// TestReceiveReleasesPort: a destination whose source never came
// (incoming_timeout) lets its listening port go when Receive returns.
// Since transport API 7 a receiving Open keeps the port bound until
// Close, a failed one included (transport.Listen), and the engine closed
// the transport only after an Open that worked: the port stayed bound,
// unanswered, for the life of the process.
func TestReceiveReleasesPort(t *testing.T) {
	dst := newMemVM(t, 1<<20, false)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	_, dstCreds, _ := transport.MintCredentials(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = engine.Receive(ctx, dst, tcp.New(nil), engine.Options{Transport: schema.Config{"listen": addr},
		Credentials: dstCreds, IncomingTimeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("Receive without a source succeeded")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after Receive gave up, its port is still bound: %v", err)
	}
	ln.Close()
}
