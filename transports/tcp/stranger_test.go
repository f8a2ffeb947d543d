//go:build linux

package tcp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// The hostile tests of issue 8: strangers on the migration port. Each
// case connects before the real source; the destination's Open must stay
// up, tell the stranger nothing (no frame, no layout) and then take the
// real source.

// stranger is one hostile peer: it acts on a fresh connection and
// returns what it read back.
type stranger func(t *testing.T, c net.Conn, layout []wire.Region) []byte

func helloBytes(layout []wire.Region) []byte {
	b, _ := wire.AppendHello(nil, wire.Hello{Session: [16]byte{6, 6, 6}, Streams: 1, PageSize: pageSize, RAM: layout})
	return b
}

// answer reads what the destination sends until it closes (or 2 s).
func answer(c net.Conn) []byte {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return b
}

var strangers = map[string]stranger{
	"HELLO with the right layout": func(t *testing.T, c net.Conn, l []wire.Region) []byte {
		c.Write(helloBytes(l))
		return answer(c)
	},
	"HELLO with a wrong layout": func(t *testing.T, c net.Conn, l []wire.Region) []byte {
		c.Write(helloBytes([]wire.Region{{GPA: 0, Size: 1 << 30}}))
		return answer(c)
	},
	"garbage": func(t *testing.T, c net.Conn, l []wire.Region) []byte {
		c.Write(junk(5000, 7))
		return answer(c)
	},
	"TLS with another job's credentials, then HELLO": func(t *testing.T, c net.Conn, l []wire.Region) []byte {
		other, _, _ := transport.MintCredentials(false)
		cfg, _ := other.TLSConfig(transport.RoleSend)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if sc, err := transport.Secure(ctx, c, transport.RoleSend, cfg, false); err == nil {
			t.Errorf("a stranger's handshake succeeded")
			sc.Write(helloBytes(l))
		}
		c.Write(helloBytes(l)) // in the clear, for good measure
		return answer(c)
	},
}

func TestStrangersLearnNothing(t *testing.T) {
	for name, fn := range strangers {
		t.Run(name, func(t *testing.T) {
			src, dst := newVM(t, testLayout), newVM(t, testLayout)
			addr := freeAddr(t)
			var logs strings.Builder
			recv, wait := openReceiver(t, dst, addr, &logs)
			c := dialUntil(t, addr)
			got := fn(t, c, wireLayout(dst.ram))
			c.Close()
			if bytes.Contains(got, []byte(wire.Magic)) || bytes.Contains(got, []byte("0x100000000")) {
				t.Errorf("the stranger read a frame or the layout: %q", got)
			}
			realSource(t, src, recv, addr, wait)
			if n := strings.Count(logs.String(), "did not authenticate"); n != 1 {
				t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}

// TestIdleConnectionsFirst: 64 connections that never speak, accepted
// before the real source, neither turn it away nor delay it beyond a
// moment: the oldest of them make room.
func TestIdleConnectionsFirst(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	addr := freeAddr(t)
	var logs strings.Builder
	recv, wait := openReceiver(t, dst, addr, &logs)
	for range maxPending {
		c := dialUntil(t, addr)
		defer c.Close()
	}
	time.Sleep(200 * time.Millisecond) // let the acceptor take them all
	start := time.Now()
	realSource(t, src, recv, addr, wait)
	if d := time.Since(start); d >= handshakeBound {
		t.Errorf("the real source took %v: it waited for idle connections to time out", d)
	}
	t.Logf("real source connected after %v; log:\n%s", time.Since(start), logs.String())
}

// openReceiver starts the destination's Open; wait returns its error.
func openReceiver(t *testing.T, dst *vm, addr string, logs *strings.Builder) (*Transport, func() error) {
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: lockedWriter{&mu, logs}})
	recv := New(log)
	t.Cleanup(func() { recv.Close() })
	done := make(chan error, 1)
	go func() { done <- recv.Open(ctxT(t), dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))) }()
	return recv, func() error { return <-done }
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func dialUntil(t *testing.T, addr string) net.Conn {
	t.Helper()
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
	return nil
}

// realSource opens the job's source and checks that the session works.
func realSource(t *testing.T, src *vm, recv *Transport, addr string, wait func() error) {
	t.Helper()
	send := New(testLogger(t))
	defer send.Close()
	ctx := ctxT(t)
	if err := send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4"))); err != nil {
		t.Fatalf("the real source: %v", err)
	}
	if err := wait(); err != nil {
		t.Fatalf("the destination: %v", err)
	}
	if err := send.SendMessage(ctx, transport.Message{Kind: 1, Payload: []byte("real")}); err != nil {
		t.Fatal(err)
	}
	if m, err := recv.RecvMessage(ctx); err != nil || string(m.Payload) != "real" {
		t.Fatalf("destination received %q, %v", m.Payload, err)
	}
}

// TestSilentConnectionDropped: a connection that never completes its
// handshake is closed after handshakeBound, without a byte in reply.
func TestSilentConnectionDropped(t *testing.T) {
	dst := newVM(t, testLayout)
	addr := freeAddr(t)
	var logs strings.Builder
	openReceiver(t, dst, addr, &logs)
	c := dialUntil(t, addr)
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(start.Add(handshakeBound + 5*time.Second))
	got, err := io.ReadAll(c)
	if d := time.Since(start); err != nil || len(got) != 0 || d < handshakeBound-time.Second || d > handshakeBound+2*time.Second {
		t.Fatalf("after %v: read %q, %v; want the destination to close the connection after about %v", d, got, err, handshakeBound)
	}
}

// dialFrom connects to addr from the loopback address local (any of
// 127.0.0.0/8 is this host on Linux), so one test can play several hosts.
func dialFrom(t *testing.T, local, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestFloodEvictsItself: with the pending slots full, a new connection
// from a host that holds more than its share of them evicts that host's
// oldest, not the older connections of a source mid-handshake (the
// oldest-first rule closed those, and a flood from one host held off
// the real source, or delayed a post-copy reconnect by seconds). When no
// host is over its share the oldest still goes.
func TestFloodEvictsItself(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, maxPending+1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*net.TCPConn)
		}
	}()
	a := &acceptor{s: &session{log: testLogger(t)}, conns: map[*net.TCPConn]*admission{}}
	// admitFrom dials from local and admits the destination's end,
	// returning it.
	admitFrom := func(local string) *net.TCPConn {
		dialFrom(t, local, ln.Addr().String())
		c := <-accepted
		t.Cleanup(func() { c.Close() })
		if !a.admit(c) {
			t.Fatalf("a connection from %s was not admitted", local)
		}
		return c
	}
	var source []*net.TCPConn
	for range 3 { // a source's streams, mid-handshake
		source = append(source, admitFrom("127.0.0.1"))
	}
	for len(a.conns) < maxPending {
		admitFrom("127.0.0.2")
	}
	admitFrom("127.0.0.2") // one over: someone must go
	for _, c := range source {
		if a.conns[c] == nil {
			t.Fatalf("the source's connection was evicted for a flooding host's")
		}
	}
	if len(a.conns) != maxPending {
		t.Fatalf("%d pending, want %d", len(a.conns), maxPending)
	}

	// Spread over many hosts, none over its share: oldest first, as before.
	a.conns = map[*net.TCPConn]*admission{}
	first := admitFrom("127.0.0.1")
	for i := 0; len(a.conns) < maxPending; i++ {
		admitFrom(fmt.Sprintf("127.0.1.%d", 1+i%(floodShare-1)))
	}
	admitFrom("127.0.2.1")
	if a.conns[first] != nil {
		t.Errorf("with no host over its share, the oldest connection was kept")
	}
}
