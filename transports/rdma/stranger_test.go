package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestIdleStrangers: connections that never say a word, more than the
// destination keeps pending, neither stop the real source nor end the
// destination's wait.
func TestIdleStrangers(t *testing.T) {
	p := providers(t)[0]
	sf, _ := memfd(t, "send", 1<<20)
	df, _ := memfd(t, "recv", 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, _ := transport.MintCredentials(false)
	cfg := schema.Config{"provider": p, "listen": freeAddr(t, "127.0.0.1"), "cleartext_pages": true, "unsafe_sockets": p == "sockets"}
	send, recv := rdma.New(nil), rdma.New(nil)
	defer send.Close()
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for len(idle) < 40 && ctx.Err() == nil {
		c, err := net.Dial("tcp", cfg["listen"].(string))
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		idle = append(idle, c)
	}
	err := send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf}, Credentials: sc})
	wg.Wait()
	if err != nil || rerr != nil {
		t.Fatalf("with %d idle strangers: send %v, receive %v", len(idle), err, rerr)
	}
}

// TestUrgentChannelOfAnotherMigration: the urgent channel names the
// session's tag as well as its nonce. A source whose urgent channel
// names another migration (a connection spliced in) is never given the
// channel: its Open fails for want of it, within connect_timeout, and
// not one page reaches the destination's RAM. The destination, whose
// source then closed the control channel, dropped that try and waits
// for a next one (README, "A source's try that ends half-way") until
// the test ends its wait; its Open fails then.
func TestUrgentChannelOfAnotherMigration(t *testing.T) {
	p := providers(t)[0]
	sf, sm := memfd(t, "send", 1<<20)
	df, dm := memfd(t, "recv", 1<<20)
	for i := range sm {
		sm[i] = 0x77
	}
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, _ := transport.MintCredentials(false)
	cfg := config(t, p)
	cfg["connect_timeout"] = int64(2 * time.Second)
	send, recv := rdma.New(nil), rdma.New(nil)
	defer send.Close()
	defer recv.Close()
	tag := transport.Tag{0xa}
	send.SetUrgentTag(transport.Tag{0xb})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() {
		rerr = recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df},
			Credentials: rc, Tag: tag})
	})
	var serr error
	for {
		serr = send.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout, Files: []*os.File{sf},
			Credentials: sc, Tag: tag})
		if serr == nil || ctx.Err() != nil || !errors.Is(serr, syscall.ECONNREFUSED) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if serr == nil || !strings.Contains(serr.Error(), "urgent channel") || rerr == nil {
		t.Fatalf("send %v, receive %v; want both failed, the source for want of its urgent channel", serr, rerr)
	}
	if !bytes.Equal(dm, make([]byte, len(dm))) {
		t.Error("the destination's RAM was written")
	}
}

// TestFloodEvictsItself: with the pending connections at their bound, a
// host that holds more than its share loses its own oldest first, not a
// connection of another host mid-handshake (the oldest-first rule closed
// that one first).
func TestFloodEvictsItself(t *testing.T) {
	p := providers(t)[0]
	df, _ := memfd(t, "recv", 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	_, rc, _ := transport.MintCredentials(false)
	cfg := config(t, p)
	recv := rdma.New(nil)
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		recv.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout, Files: []*os.File{df}, Credentials: rc})
	})
	addr := cfg["listen"].(string)
	dial := func(local string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		for ctx.Err() == nil {
			if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
				t.Cleanup(func() { c.Close() })
				return c
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("nothing listens on %s", addr)
		return nil
	}
	source := dial("127.0.0.1") // the oldest: a source whose handshake is slow
	start := time.Now()
	var flood []net.Conn
	for range 64 { // twice the bound, from one host
		flood = append(flood, dial("127.0.0.2"))
	}
	// The flood's first connection is evicted once the bound is reached.
	flood[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := flood[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the flood's oldest connection was not closed: %v", err)
	}
	source.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := source.Read(make([]byte, 1))
	if d := time.Since(start); d > 2*time.Second {
		t.Skipf("the flood took %v, near the destination's handshake bound: cannot tell eviction from timeout", d)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the source's pending connection was closed for a flooding host's: %v", err)
	}
}
