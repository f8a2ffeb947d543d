package rdma

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// TestSourceTimeoutSaidOnce: a source's Open whose time runs out says
// once what it was waiting for and which bound ended it, at every step
// of the setup: a destination that stops answering at each step in
// turn. Before, the fabric steps said "fabric: context deadline
// exceeded: context deadline exceeded", the others "i/o timeout:
// context deadline exceeded", and none named connect_timeout.
func TestSourceTimeoutSaidOnce(t *testing.T) {
	if err := fabric.Providers("127.0.0.1", "tcp")["tcp"]; err != nil {
		t.Skipf("provider tcp does not work here: %v", err)
	}
	for _, c := range []struct {
		stall  stall
		step   string
		parent time.Duration // the Open's own deadline, if shorter than connect_timeout
	}{
		{stallListen, "connecting to", 0},
		{stallTLS, "authenticating with the destination", 0},
		{stallOffer, "waiting for the destination's OFFER", 0},
		{stallFabric, "connecting the fabric endpoint", 0},
		{stallUrgentFabric, "connecting the urgent fabric endpoint", 0},
		{stallKeys, "waiting for the destination's KEYS", 0},
		{stallUrgentTLS, "authenticating the urgent channel", 0},
		{stallUrgentAnswer, "waiting for the destination's answer to URGENT", 0},
		{stallOffer, "waiting for the destination's OFFER", 500 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("%s/%v", c.step, c.parent), func(t *testing.T) {
			t.Parallel()
			bound := "connect_timeout (1s) passed while " + c.step
			timeout := time.Second
			if c.parent != 0 {
				bound, timeout = "the Open's deadline passed while "+c.step, 10*time.Second
			}
			err := openAgainstStall(t, c.stall, timeout, c.parent)
			t.Logf("the source's Open: %v", err)
			if err == nil || !strings.Contains(err.Error(), bound) {
				t.Fatalf("the source's Open = %v; want it to say %q", err, bound)
			}
			if n := strings.Count(err.Error(), "deadline exceeded"); n != 1 || strings.Contains(err.Error(), "i/o timeout") {
				t.Errorf("the error says %d times %q (and i/o timeout: %v); want once", n, "deadline exceeded",
					strings.Contains(err.Error(), "i/o timeout"))
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the error's class is not context.DeadlineExceeded")
			}
		})
	}
}

// stall is the step where stalledDestination stops answering.
type stall int

const (
	stallListen       stall = iota // nothing listens
	stallTLS                       // TCP accepted, no TLS
	stallOffer                     // HELLO read, no OFFER
	stallFabric                    // OFFER sent, the fabric connection not accepted
	stallUrgentFabric              // the urgent fabric connection not accepted
	stallKeys                      // no KEYS
	stallUrgentTLS                 // the urgent channel's TCP accepted, no TLS
	stallUrgentAnswer              // URGENT read, no answer
)

// openAgainstStall opens a source with connect_timeout bound (and, if
// parent is not 0, a context that ends then) against a destination that
// stops answering at stall, and returns the source's error.
func openAgainstStall(t *testing.T, at stall, bound, parent time.Duration) error {
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	if at == stallListen {
		ln.Close()
		close(done)
	} else {
		go func() { defer close(done); stalledDestination(ctx, ln, rc, at) }()
	}
	defer func() { cancel(); ln.Close(); <-done }()
	fd, err := unix.MemfdCreate("send", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "send")
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	octx := ctx
	if parent != 0 {
		var stop context.CancelFunc
		octx, stop = context.WithTimeout(ctx, parent)
		defer stop()
	}
	s := New(nil)
	defer s.Close()
	return s.Open(octx, transport.OpenRequest{Role: transport.RoleSend, RAM: []transport.RAMRegion{{GPA: 0, Size: 1 << 20}},
		Files: []*os.File{f}, Credentials: sc, Config: schema.Config{"provider": "tcp", "listen": addr,
			"cleartext_pages": true, "connect_timeout": int64(bound)}})
}

// stalledDestination plays a destination on ln, with the job's
// credentials rc, up to the step at, where it stops answering until ctx
// ends.
func stalledDestination(ctx context.Context, ln net.Listener, rc transport.Credentials, at stall) {
	auth, _ := rc.TLSConfig(transport.RoleReceive)
	accept := func() (net.Conn, bool) {
		c, err := ln.Accept()
		if err != nil {
			return nil, false
		}
		context.AfterFunc(ctx, func() { c.Close() })
		return c, true
	}
	c, ok := accept()
	if !ok || at == stallTLS {
		<-ctx.Done()
		return
	}
	sc, err := transport.Secure(ctx, c, transport.RoleReceive, auth, false)
	if err != nil || at == stallOffer {
		<-ctx.Done()
		return
	}
	if _, err := readSetup(sc, setupHello); err != nil {
		return
	}
	l, err := fabric.Listen("tcp", "127.0.0.1")
	if err != nil {
		return
	}
	defer l.Close()
	ul, err := fabric.ListenShared(l, "127.0.0.1")
	if err != nil {
		return
	}
	defer ul.Close()
	port, _ := l.Port()
	uport, _ := ul.Port()
	o := offer{port: uint16(port), uport: uint16(uport), layout: []wire.Region{{GPA: 0, Size: 1 << 20}}}
	if writeSetup(sc, setupOffer, o.append(nil)) != nil || at == stallFabric {
		<-ctx.Done()
		return
	}
	any := func([]byte) bool { return true }
	none := func(*fabric.Endpoint) error { return nil }
	ep, err := l.Accept(ctx, any, none)
	if err != nil {
		return
	}
	defer ep.Close()
	if at == stallUrgentFabric {
		<-ctx.Done()
		return
	}
	uep, err := ul.Accept(ctx, any, none)
	if err != nil {
		return
	}
	defer uep.Close()
	if at == stallKeys {
		<-ctx.Done()
		return
	}
	if writeSetup(sc, setupKeys, append([]byte{0, 0, 0, 1}, make([]byte, 32)...)) != nil { // one region's keys
		return
	}
	u, ok := accept()
	if !ok || at == stallUrgentTLS {
		<-ctx.Done()
		return
	}
	if usc, err := transport.Secure(ctx, u, transport.RoleReceive, auth, false); err == nil {
		readSetup(usc, setupUrgent) // and no answer
	}
	<-ctx.Done()
}
