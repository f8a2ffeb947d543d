package rdma_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestIdleStrangers: connections that never say a word, more than the
// destination keeps pending, neither stop the real source nor end the
// destination's wait.
func TestIdleStrangers(t *testing.T) {
	p := startPair(t, providers(t)[0], nil, transport.Tag{})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for len(idle) < 40 {
		c, err := net.Dial("tcp", p.cfg["listen"].(string)) // it listens (startPair)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	err := p.send.Open(p.ctx, p.sendReq(transport.Tag{}))
	if rerr := p.received(); err != nil || rerr != nil {
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
	prov := providers(t)[0]
	cfg := config(t, prov)
	cfg["connect_timeout"] = int64(2 * time.Second)
	tag := transport.Tag{0xa}
	p := newPair(t, prov, cfg)
	for i := range p.sm {
		p.sm[i] = 0x77
	}
	p.send.SetUrgentTag(transport.Tag{0xb})
	p.startDestination(t, tag)
	serr := p.send.Open(p.ctx, p.sendReq(tag))
	if serr == nil || !strings.Contains(serr.Error(), "urgent channel") {
		t.Fatalf("send %v; want it failed for want of its urgent channel", serr)
	}
	p.waitLog(t, rdma.LogDropped, 1) // the destination dropped that try, and waits on
	p.cancel()
	if rerr := p.received(); rerr == nil {
		t.Fatal("the destination's Open succeeded without a source")
	}
	if !bytes.Equal(p.dm, make([]byte, len(p.dm))) {
		t.Error("the destination's RAM was written")
	}
}

// TestFloodEvictsItself: with the pending connections at their bound, a
// host that holds more than its share loses its own oldest first, not a
// connection of another host mid-handshake (the oldest-first rule closed
// that one first).
func TestFloodEvictsItself(t *testing.T) {
	p := startPair(t, providers(t)[0], nil, transport.Tag{})
	addr := p.cfg["listen"].(string)
	dial := func(local string) net.Conn { // it listens (startPair)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.DialContext(p.ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
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
