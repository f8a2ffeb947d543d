//go:build linux

package tcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// The migration tag (transport.Transport, "Migration tag"): a source
// that holds the job's credentials but names another migration, on any
// stream, gets nothing written and nothing told but the refusal.

var tagA, tagB = transport.Tag{0xa, 1, 2, 3}, transport.Tag{0xb, 1, 2, 3}

// rawStream dials addr, authenticates with the job's credentials and
// writes h in wire version v, followed right away (without waiting for
// an answer) by push.
func rawStream(t *testing.T, addr string, h wire.Hello, v uint8, push []byte) net.Conn {
	t.Helper()
	c := secureRaw(t, dialUntil(t, addr), transport.RoleSend)
	t.Cleanup(func() { c.Close() })
	b, err := wire.AppendHelloIn(nil, h, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(b, push...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// pushed is what a hostile source writes behind its HELLO on stream i, in
// wire version v: a PAGES batch and a ZERO run in that stream's first
// cell, and a message.
func pushed(t *testing.T, i int, v uint8) []byte {
	first := uint64(i) * batchPages
	b, err := wire.AppendPages(nil, 1, wire.Run{First: first, Count: 4}, false, bytes.Repeat([]byte{0x66}, 4*pageSize))
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, mustZero(2, first+8, 8)...)
	if b, err = wire.AppendMsg(b, 1, []byte("stranger")); err != nil {
		t.Fatal(err)
	}
	if v == 1 {
		return inVersion1(b)
	}
	return b
}

// refusedOnly reads everything the destination sends on c until it
// closes it: exactly one ABORT of code CodeOtherMigration, in wire
// version v, that names nothing of the destination. It returns the
// ABORT's reason.
func refusedOnly(t *testing.T, c net.Conn, v uint8, what string) string {
	t.Helper()
	got := answer(c)
	d := wire.NewDecoder(bytes.NewReader(got))
	f, err := d.Next()
	if err != nil || f.Type != wire.TypeAbort || f.Code != wire.CodeOtherMigration || f.Version != v {
		t.Errorf("%s: the destination answered %v %v %q (version %d), want one ABORT of another migration in version %d",
			what, f.Type, f.Code, f.Reason, f.Version, v)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Errorf("%s: more after the ABORT: %v", what, err)
	}
	if bytes.Contains(got, []byte("0x")) {
		t.Errorf("%s: the refusal names the layout: %q", what, got)
	}
	return f.Reason
}

// junkRAM fills dst's RAM with junk and returns a copy of it.
func junkRAM(dst *vm) [][]byte {
	var before [][]byte
	for i := range dst.mem {
		copy(dst.mem[i], junk(len(dst.mem[i]), uint64(i)+40))
		before = append(before, bytes.Clone(dst.mem[i]))
	}
	return before
}

func untouched(t *testing.T, dst *vm, before [][]byte) {
	t.Helper()
	for i := range dst.mem {
		if !bytes.Equal(dst.mem[i], before[i]) {
			t.Fatalf("region %d of the destination's RAM was written", i)
		}
	}
}

// taggedSource opens a real source naming tag and checks that the
// session works: a page and a message arrive.
func taggedSource(t *testing.T, src, dst *vm, recv *Transport, addr string, tag transport.Tag, wait func() error) {
	t.Helper()
	send := New(testLogger(t))
	defer send.Close()
	ctx := ctxT(t)
	req := src.request(transport.RoleSend, cfg(addr, 2, "lz4"))
	req.Tag = tag
	if err := send.Open(ctx, req); err != nil {
		t.Fatalf("the real source: %v", err)
	}
	if err := wait(); err != nil {
		t.Fatalf("the destination: %v", err)
	}
	copy(src.page(3), bytes.Repeat([]byte{0x33}, pageSize))
	if err := send.SendPages(ctx, []transport.PageRun{{First: 3, Count: 1, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	if err := send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.page(3), src.page(3)) {
		t.Error("the real source's page did not arrive")
	}
	if err := send.SendMessage(ctx, transport.Message{Kind: 1, Payload: []byte("real")}); err != nil {
		t.Fatal(err)
	}
	if m, err := recv.RecvMessage(ctx); err != nil || string(m.Payload) != "real" {
		t.Fatalf("destination received %q, %v", m.Payload, err)
	}
}

// openTagged starts a destination's Open waiting for tag; wait returns
// its error.
func openTagged(t *testing.T, dst *vm, addr string, tag transport.Tag, logs *strings.Builder) (*Transport, func() error) {
	var mu sync.Mutex
	recv := New(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: lockedWriter{&mu, logs}}))
	t.Cleanup(func() { recv.Close() })
	req := dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))
	req.Tag = tag
	done := make(chan error, 1)
	go func() { done <- recv.Open(ctxT(t), req) }()
	return recv, func() error { return <-done }
}

// TestOtherMigrationRefused: a destination waits for migration A. A
// source holding the job's credentials opens every stream of a session
// naming migration B, and one of wire version 1, which names none, and
// each pushes pages, a zero run and a message right behind its HELLOs.
// Every stream is answered with the refusal alone, in its own version;
// not one byte of guest RAM changes; the destination's Open waits on and
// takes the real source (A), logging the refusals once per host.
func TestOtherMigrationRefused(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	before := junkRAM(dst)
	addr := freeAddr(t)
	var logs strings.Builder
	recv, wait := openTagged(t, dst, addr, tagA, &logs)
	for _, c := range []struct {
		name string
		tag  transport.Tag
		v    uint8
	}{{"another tag", tagB, wire.Version}, {"no tag (wire version 1)", transport.Tag{}, 1}} {
		const streams = 2
		var conns []net.Conn
		for i := range streams + 1 {
			h := wire.Hello{Session: [16]byte{9, byte(c.v)}, Tag: c.tag, Stream: uint16(i), Streams: streams, PageSize: pageSize,
				RAM: wireLayout(dst.ram)}
			if i == streams {
				h.Stream, h.Urgent = 0, true
			}
			conns = append(conns, rawStream(t, addr, h, c.v, pushed(t, i%streams, c.v)))
		}
		for i, conn := range conns {
			reason := refusedOnly(t, conn, c.v, c.name+", stream "+string(rune('0'+i)))
			// A version-1 source is most likely this migration's, of an
			// older Ferry: it is told what to do.
			if v1 := strings.Contains(reason, "wire version 1") && strings.Contains(reason, "upgrade"); v1 != (c.v == 1) {
				t.Errorf("%s: refused with %q", c.name, reason)
			}
		}
	}
	untouched(t, dst, before)
	taggedSource(t, src, dst, recv, addr, tagA, wait)
	if n := strings.Count(logs.String(), "refused a connection that named another migration"); n != 1 {
		t.Errorf("the refusals were logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestNoSplice: a stream with the real session's id but another tag
// cannot become part of that session, whether the destination waits for
// the real tag (it is refused) or takes any (it is kept apart and closed
// unread once the real session is complete); its pushed pages never
// land. The real source's raw streams then complete the session.
func TestNoSplice(t *testing.T) {
	for _, c := range []struct {
		name string
		wait transport.Tag
	}{{"tagged destination", tagA}, {"destination taking any tag", transport.Tag{}}} {
		t.Run(c.name, func(t *testing.T) {
			dst := newVM(t, testLayout)
			before := junkRAM(dst)
			addr := freeAddr(t)
			var logs strings.Builder
			recv, wait := openTagged(t, dst, addr, c.wait, &logs)
			id := [16]byte{7, 7, 7}
			hello := func(i int, tag transport.Tag) wire.Hello {
				h := wire.Hello{Session: id, Tag: tag, Stream: uint16(i), Streams: 2, PageSize: pageSize, RAM: wireLayout(dst.ram)}
				if i == 2 {
					h.Stream, h.Urgent = 0, true
				}
				return h
			}
			real0 := rawStream(t, addr, hello(0, tagA), wire.Version, nil)
			realU := rawStream(t, addr, hello(2, tagA), wire.Version, nil)
			splice := rawStream(t, addr, hello(1, tagB), wire.Version, pushed(t, 1, wire.Version))
			if c.wait == tagA {
				refusedOnly(t, splice, wire.Version, "the spliced stream")
			}
			real1 := rawStream(t, addr, hello(1, tagA), wire.Version, nil)
			if err := wait(); err != nil {
				t.Fatalf("the destination: %v", err)
			}
			for i, conn := range []net.Conn{real0, real1, realU} {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := wire.NewDecoder(conn).Next()
				if err != nil || f.Type != wire.TypeHello || f.Hello.Tag != tagA || f.Hello.Session != id {
					t.Fatalf("real stream %d: answered %v %v (tag %x)", i, f.Type, err, f.Hello.Tag[:4])
				}
			}
			if c.wait != tagA {
				splice.SetReadDeadline(time.Now().Add(5 * time.Second))
				// Closed with its pushed frames unread: a reset, or an end.
				if b, err := io.ReadAll(splice); len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the spliced stream read %q, %v; want it closed unanswered", b, err)
				}
			}
			recv.Close()
			untouched(t, dst, before)
		})
	}
}

// TestVersion1Source: a destination that takes any tag (its first
// session without a migration ID) takes a source of wire version 1,
// which names none, and answers it in version 1 on every stream (HELLO,
// ACK, MSG), as docs/ARCHITECTURE.md#versions promises: destinations
// can be upgraded before sources.
func TestVersion1Source(t *testing.T) {
	dst := newVM(t, testLayout)
	addr := freeAddr(t)
	var logs strings.Builder
	recv, wait := openTagged(t, dst, addr, transport.Tag{}, &logs)
	var conns []net.Conn
	for i := range 2 {
		h := wire.Hello{Session: [16]byte{1}, Streams: 1, PageSize: pageSize, RAM: wireLayout(dst.ram)}
		if i == 1 {
			h.Urgent = true
		}
		conns = append(conns, rawStream(t, addr, h, 1, nil))
	}
	if err := wait(); err != nil {
		t.Fatalf("the destination: %v", err)
	}
	d := wire.NewDecoder(conns[0])
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := d.Next(); err != nil || f.Type != wire.TypeHello || f.Version != 1 {
		t.Fatalf("HELLO answered with %v %v in version %d, want HELLO in version 1", f.Type, err, f.Version)
	}
	page := bytes.Repeat([]byte{0x5e}, pageSize)
	b, _ := wire.AppendPages(nil, 1, wire.Run{First: 2, Count: 1}, false, page)
	wire.SetVersion(b, 1)
	if _, err := conns[0].Write(b); err != nil {
		t.Fatal(err)
	}
	if f, err := d.Next(); err != nil || f.Type != wire.TypeAck || f.Seq != 1 || f.Version != 1 {
		t.Fatalf("after a version-1 batch: %v %v seq %d version %d, want ACK 1 in version 1", f.Type, err, f.Seq, f.Version)
	}
	if !bytes.Equal(dst.page(2), page) {
		t.Error("the version-1 page did not land")
	}
	if err := recv.SendMessage(ctxT(t), transport.Message{Kind: 4, Payload: []byte("to v1")}); err != nil {
		t.Fatal(err)
	}
	if f, err := d.Next(); err != nil || f.Type != wire.TypeMsg || string(f.Payload) != "to v1" || f.Version != 1 {
		t.Fatalf("a message to a version-1 source: %v %v %q version %d", f.Type, err, f.Payload, f.Version)
	}
}

// TestTakeAnyAmidStrangers: a destination that takes any tag completes
// a session while other authenticated connections say HELLO for other
// sessions of other migrations at the same moment. The session taken
// gives the destination its tag; the acceptor's check of the others must
// not read it while it is being set (go test -race).
func TestTakeAnyAmidStrangers(t *testing.T) {
	dst := newVM(t, testLayout)
	addr := freeAddr(t)
	var logs strings.Builder
	_, wait := openTagged(t, dst, addr, transport.Tag{}, &logs)
	hello := func(i int, id byte, tag transport.Tag) []byte {
		h := wire.Hello{Session: [16]byte{id}, Tag: tag, Stream: uint16(i), Streams: 1, PageSize: pageSize, RAM: wireLayout(dst.ram)}
		if i == 1 {
			h.Stream, h.Urgent = 0, true
		}
		b, err := wire.AppendHello(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type conn struct {
		c     net.Conn
		hello []byte
	}
	var conns []conn
	for i := range 2 {
		conns = append(conns, conn{secureRaw(t, dialUntil(t, addr), transport.RoleSend), hello(i, 1, tagA)})
	}
	for i := range 16 { // one stream each of sessions that never complete
		conns = append(conns, conn{secureRaw(t, dialUntil(t, addr), transport.RoleSend), hello(0, byte(2+i), tagB)})
	}
	for _, c := range conns {
		t.Cleanup(func() { c.c.Close() })
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.c.Write(c.hello) })
	}
	wg.Wait()
	if err := wait(); err != nil {
		t.Fatalf("the destination: %v", err)
	}
	for i, c := range conns[:2] {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := wire.NewDecoder(c.c).Next()
		if err != nil || f.Type != wire.TypeHello || f.Hello.Tag != tagA {
			t.Fatalf("stream %d of the session taken: answered %v %v (tag %x)", i, f.Type, err, f.Hello.Tag[:4])
		}
	}
}

// TestVersion1Destination: a destination of wire version 1 (a Ferry from
// before transport API 8) refuses this source's version-2 HELLO, in
// version 1, as it must (it reads no newer version). The source's error
// says what to do: that answer came in a version this side does not
// speak to it, so the destination is the older one.
func TestVersion1Destination(t *testing.T) {
	src := newVM(t, testLayout)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // version 1's acceptor: authenticate, refuse the first frame naming both versions
		for range 3 { // two bulk streams and the urgent one
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc, _ := creds(transport.RoleReceive).TLSConfig(transport.RoleReceive)
				sc, err := transport.Secure(ctxT(t), c, transport.RoleReceive, tc, false)
				if err != nil {
					t.Errorf("the version-1 destination: %v", err)
					return
				}
				var h [wire.HeaderSize]byte
				io.ReadFull(sc, h[:])
				b := wire.AppendAbort(nil, wire.CodeProtocol, "no HELLO: transport protocol violation: unsupported frame version 2 (this side speaks 1)")
				wire.SetVersion(b, 1)
				sc.Write(b)
			})
		}
	})
	send := New(testLogger(t))
	defer send.Close()
	req := src.request(transport.RoleSend, cfg(ln.Addr().String(), 2, "lz4"))
	req.Tag = tagA
	err = send.Open(ctxT(t), req)
	if err == nil || !strings.Contains(err.Error(), "upgrade Ferry on the destination") {
		t.Fatalf("Open at a version-1 destination: %v; want it to say to upgrade the destination", err)
	}
}
