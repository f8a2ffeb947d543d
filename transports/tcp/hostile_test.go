//go:build linux

package tcp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// rawPeer is a hand-driven end of a session: the tests write frames
// byte by byte.
type rawPeer struct {
	conns []net.Conn
	decs  []*wire.Decoder
}

func wireLayout(ram []transport.RAMRegion) []wire.Region {
	var l []wire.Region
	for _, r := range ram {
		l = append(l, wire.Region{GPA: r.GPA, Size: r.Size})
	}
	return l
}

// dialRaw connects as a source with the given layout and completes the
// handshake: streams bulk streams, then the urgent one (the last conn).
func dialRaw(t *testing.T, addr string, layout []wire.Region, streams int) *rawPeer {
	t.Helper()
	p := &rawPeer{}
	id := [16]byte{1, 2, 3}
	for i := range streams + 1 {
		var c net.Conn
		var err error
		for range 100 {
			if c, err = net.Dial("tcp", addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c = secureRaw(t, c, transport.RoleSend)
		h := wire.Hello{Session: id, Stream: uint16(i), Streams: uint16(streams), PageSize: pageSize, RAM: layout}
		if i == streams {
			h.Stream, h.Urgent = 0, true
		}
		b, _ := wire.AppendHello(nil, h)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		p.conns, p.decs = append(p.conns, c), append(p.decs, wire.NewDecoder(c))
	}
	for i, d := range p.decs {
		p.conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if f, err := d.Next(); err != nil || f.Type != wire.TypeHello {
			t.Fatalf("handshake reply on stream %d: %v %v", i, f.Type, err)
		}
	}
	return p
}

// receiveFrom opens a destination on dst and lets a raw source connect.
func receiveFrom(t *testing.T, dst *vm, streams int) (*Transport, *rawPeer) {
	t.Helper()
	addr := freeAddr(t)
	recv := New(testLogger(t))
	t.Cleanup(func() { recv.Close() })
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { err = recv.Open(ctxT(t), dst.request(transport.RoleReceive, cfg(addr, streams, "lz4"))) })
	p := dialRaw(t, addr, wireLayout(dst.ram), streams)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return recv, p
}

func junk(n int, seed uint64) []byte {
	b := make([]byte, n)
	fillRandom(b, rand.New(rand.NewPCG(seed, seed)))
	return b
}

// TestHostileSource: frames that reach outside guest RAM, break the
// format or stop half-way fail the destination's session cleanly, and
// nothing outside the range a frame claimed is written.
func TestHostileSource(t *testing.T) {
	n := uint64(0)
	for _, r := range testLayout {
		n += r.Size / pageSize
	}
	r0 := testLayout[0].Size / pageSize
	pages := func(seq, first uint64, count uint32) []byte {
		b, _ := wire.AppendPages(nil, seq, wire.Run{First: first, Count: count}, false, junk(int(count)*pageSize, first))
		return b
	}
	lz4Bomb, _ := wire.AppendPages(nil, 1, wire.Run{First: 20, Count: 4}, true, append([]byte{0xff, 0xff, 0xff}, junk(300, 9)...))
	cases := []struct {
		name    string
		frames  []byte
		claimed [2]uint64 // pages the frame may have touched
		want    error
	}{
		{"past the end of RAM", pages(1, n-1, 2), [2]uint64{}, transport.ErrProtocol},
		{"far outside RAM", pages(1, 1<<40, 1), [2]uint64{}, transport.ErrProtocol},
		{"across a region end", pages(1, r0-1, 2), [2]uint64{}, transport.ErrProtocol},
		{"zero run outside RAM", mustZero(1, n, 1), [2]uint64{}, transport.ErrProtocol},
		{"wrong batch number", pages(2, 5, 1), [2]uint64{}, transport.ErrProtocol},
		{"truncated frame", pages(1, 10, 4)[:wire.HeaderSize+wire.RunSize+5000], [2]uint64{10, 14}, wire.ErrTruncated},
		{"garbage", junk(5000, 3), [2]uint64{}, wire.ErrBadMagic},
		{"ACK from the source", wire.AppendAck(nil, 1), [2]uint64{}, transport.ErrProtocol},
		{"corrupt lz4", lz4Bomb, [2]uint64{20, 24}, wire.ErrMalformed},
		{"killed after a frame", pages(1, 30, 1), [2]uint64{30, 31}, transport.ErrClosed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := newVM(t, testLayout)
			for i := range dst.mem {
				copy(dst.mem[i], junk(len(dst.mem[i]), uint64(i)))
			}
			before := [][]byte{bytes.Clone(dst.mem[0]), bytes.Clone(dst.mem[1])}
			recv, p := receiveFrom(t, dst, 1)
			p.conns[0].Write(c.frames)
			p.conns[0].(interface{ CloseWrite() error }).CloseWrite()
			_, err := recv.RecvMessage(ctxT(t))
			if !errors.Is(err, c.want) {
				t.Fatalf("destination: %v, want %v", err, c.want)
			}
			if !errors.Is(c.want, transport.ErrClosed) {
				// The source is told why.
				p.conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
				f, ferr := p.decs[0].Next()
				if ferr != nil || f.Type != wire.TypeAbort || f.Code != wire.CodeProtocol {
					t.Fatalf("source got %v %v %q, want ABORT", f.Type, ferr, f.Reason)
				}
			}
			recv.Close()
			pg := uint64(0)
			for i := range dst.mem {
				for off := 0; off < len(dst.mem[i]); off, pg = off+pageSize, pg+1 {
					if pg >= c.claimed[0] && pg < c.claimed[1] {
						continue
					}
					if !bytes.Equal(dst.mem[i][off:off+pageSize], before[i][off:off+pageSize]) {
						t.Fatalf("page %d outside the claimed range %v was written", pg, c.claimed)
					}
				}
			}
		})
	}
}

func mustZero(seq, first uint64, count uint32) []byte {
	return mustZeroRun(seq, wire.Run{First: first, Count: count})
}

func mustZeroRun(seq uint64, r wire.Run) []byte {
	b, err := wire.AppendZero(nil, seq, r)
	if err != nil {
		panic(err)
	}
	return b
}

// strided is a strided ZERO run over the transport's grid.
func strided(first uint64, count uint32, every uint16) wire.Run {
	return wire.Run{First: first, Count: count, Cell: batchPages, Every: every}
}

// TestStrangersRejected: connections that are not the source's (garbage,
// a stream of another session that does not fit) do not stop the
// destination from accepting the real source.
func TestStrangersRejected(t *testing.T) {
	src, dst := newVM(t, testLayout), newVM(t, testLayout)
	addr := freeAddr(t)
	send, recv := New(testLogger(t)), New(testLogger(t))
	defer send.Close()
	defer recv.Close()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() { rerr = recv.Open(ctx, dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))) })
	var c net.Conn
	var err error
	for range 100 {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	defer c.Close()
	lone := dialRawNoReply(t, addr, wireLayout(dst.ram), 7) // stream 0 of 7, never completed
	defer lone.Close()
	if err := send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4"))); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err := send.SendMessage(ctx, transport.Message{Kind: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := recv.RecvMessage(ctx); err != nil {
		t.Fatal(err)
	}
}

func dialRawNoReply(t *testing.T, addr string, layout []wire.Region, streams int) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := wire.AppendHello(nil, wire.Hello{Session: [16]byte{9}, Streams: uint16(streams), PageSize: pageSize, RAM: layout})
	c.Write(b)
	return c
}

// TestLayoutMismatch: both sides refuse, naming both layouts.
func TestLayoutMismatch(t *testing.T) {
	other := []transport.RAMRegion{{GPA: 0, Size: 3 << 20}, {GPA: 1 << 32, Size: 1 << 20, Offset: 4 << 20}}
	src, dst := newVM(t, testLayout), newVM(t, other)
	addr := freeAddr(t)
	send, recv := New(testLogger(t)), New(testLogger(t))
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var rerr error
	wg.Go(func() { rerr = recv.Open(ctx, dst.request(transport.RoleReceive, cfg(addr, 2, "lz4"))) })
	serr := send.Open(ctx, src.request(transport.RoleSend, cfg(addr, 2, "lz4")))
	wg.Wait()
	for side, err := range map[string]error{"source": serr, "destination": rerr} {
		if !errors.Is(err, ErrLayoutMismatch) {
			t.Fatalf("%s: %v, want ErrLayoutMismatch", side, err)
		}
		for _, l := range []string{"[0x0+0x300000 0x100000000+0x200000]", "[0x0+0x300000 0x100000000+0x100000]"} {
			if !strings.Contains(err.Error(), l) {
				t.Fatalf("%s error does not name layout %s: %v", side, l, err)
			}
		}
	}
	t.Logf("source: %v\ndestination: %v", serr, rerr)
}

// fakeDestination accepts one source stream and the urgent one, answers
// their HELLOs and hands the bulk connection to fn.
func fakeDestination(t *testing.T, src *vm, fn func(c net.Conn, raw *net.TCPConn, d *wire.Decoder)) (*Transport, context.Context) {
	t.Helper()
	send := New(testLogger(t))
	bulk, _ := acceptSource(t, send, src)
	go fn(bulk.conn, bulk.raw, bulk.dec)
	return send, ctxT(t)
}

// fakeEnd is one stream of a hand-driven destination (acceptSource).
type fakeEnd struct {
	conn net.Conn     // TLS
	raw  *net.TCPConn // the socket under it
	dec  *wire.Decoder
}

// acceptSource opens send as the source of a session of one bulk
// stream, accepts its bulk stream and its urgent one as a hand-driven
// destination, answers their HELLOs and returns them.
func acceptSource(t *testing.T, send *Transport, src *vm) (bulk, urgent fakeEnd) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Cleanup(func() { send.Close() })
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var serr error
	wg.Go(func() { serr = send.Open(ctx, src.request(transport.RoleSend, cfg(l.Addr().String(), 1, "none"))) })
	accept := func() fakeEnd {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sc := secureRaw(t, c, transport.RoleReceive)
		return fakeEnd{conn: sc, raw: c.(*net.TCPConn), dec: wire.NewDecoder(sc)}
	}
	bulk = accept()
	urgent = accept()
	for _, e := range []fakeEnd{bulk, urgent} {
		f, err := e.dec.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := wire.AppendHello(nil, f.Hello)
		e.conn.Write(b)
	}
	wg.Wait()
	if serr != nil {
		t.Fatal(serr)
	}
	return bulk, urgent
}

// TestHostileDestination: an ACK for a batch never sent, or a destination
// that dies mid-stream, fails the source with an error, not a hang.
func TestHostileDestination(t *testing.T) {
	src := newVM(t, testLayout)
	all := []transport.PageRun{{First: 0, Count: src.pages(), Kind: transport.KindData}}
	t.Run("ACK beyond what was sent", func(t *testing.T) {
		send, ctx := fakeDestination(t, src, func(c net.Conn, raw *net.TCPConn, d *wire.Decoder) { c.Write(wire.AppendAck(nil, 1000)) })
		err := send.SendPages(ctx, all)
		if err == nil {
			err = send.Flush(ctx)
		}
		if !errors.Is(err, transport.ErrProtocol) {
			t.Fatalf("got %v, want ErrProtocol", err)
		}
	})
	t.Run("killed mid-stream", func(t *testing.T) {
		send, ctx := fakeDestination(t, src, func(c net.Conn, raw *net.TCPConn, d *wire.Decoder) {
			d.Next()
			raw.SetLinger(0) // reset, as a killed process's kernel may
			raw.Close()
		})
		err := send.SendPages(ctx, all)
		for err == nil {
			err = send.Flush(ctx)
			if err == nil {
				err = send.SendPages(ctx, all)
			}
		}
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
		if _, err := send.RecvMessage(ctx); !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("RecvMessage: %v, want ErrClosed", err)
		}
	})
	t.Run("silent", func(t *testing.T) {
		send, ctx := fakeDestination(t, src, func(c net.Conn, raw *net.TCPConn, d *wire.Decoder) {})
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := send.SendPages(short, all)
		if err == nil {
			err = send.Flush(short)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want a deadline error", err)
		}
	})
}

// TestHostileUrgent: the urgent stream and the bulk grid are checked
// like everything else: urgent pages across the bulk grid or outside RAM,
// an ACK on the urgent stream, a bulk batch on a stream that does not
// carry its pages, and a strided ZERO run anywhere but on a bulk stream
// with the session's own stride and over its own cells, each fail the destination with ErrProtocol, tell the
// source why, and write nothing.
func TestHostileUrgent(t *testing.T) {
	n := uint64(0)
	for _, r := range testLayout {
		n += r.Size / pageSize
	}
	pages := func(seq, first uint64, count uint32) []byte {
		b, _ := wire.AppendPages(nil, seq, wire.Run{First: first, Count: count}, false, junk(int(count)*pageSize, first))
		return b
	}
	for _, c := range []struct {
		name   string
		urgent bool // on the urgent stream, else on bulk stream 0
		frames []byte
	}{
		{"urgent pages across the grid", true, pages(0, batchPages-1, 2)},
		{"urgent pages outside RAM", true, pages(0, n, 1)},
		{"urgent zero outside RAM", true, mustZero(0, n-1, 2)},
		{"ACK on the urgent stream", true, wire.AppendAck(nil, 1)},
		{"bulk batch of stream 1 on stream 0", false, pages(1, batchPages, 1)},
		{"strided zero on the urgent stream", true, mustZeroRun(0, strided(0, 512, 2))},
		{"strided zero of stream 1 on stream 0", false, mustZeroRun(1, strided(batchPages, 512, 2))},
		{"strided zero with another stride", false, mustZeroRun(1, strided(0, 512, 3))},
		{"strided zero with another cell", false, mustZeroRun(1, wire.Run{First: 0, Count: 512, Cell: batchPages / 2, Every: 2})},
		{"strided zero across a region end", false, mustZeroRun(1, strided(0, uint32(testLayout[0].Size/pageSize)+1, 2))},
		{"strided zero outside RAM", false, mustZeroRun(1, strided(0, uint32(n)+1, 2))},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := newVM(t, testLayout)
			before := [][]byte{bytes.Clone(dst.mem[0]), bytes.Clone(dst.mem[1])}
			recv, p := receiveFrom(t, dst, 2)
			i := 0
			if c.urgent {
				i = len(p.conns) - 1
			}
			p.conns[i].Write(c.frames)
			_, err := recv.RecvUrgent(ctxT(t))
			if !errors.Is(err, transport.ErrProtocol) {
				t.Fatalf("destination: %v, want ErrProtocol", err)
			}
			p.conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
			f, ferr := p.decs[i].Next()
			if ferr != nil || f.Type != wire.TypeAbort || f.Code != wire.CodeProtocol {
				t.Fatalf("source got %v %v %q, want ABORT", f.Type, ferr, f.Reason)
			}
			recv.Close()
			for r := range dst.mem {
				if !bytes.Equal(dst.mem[r], before[r]) {
					t.Fatalf("region %d was written", r)
				}
			}
		})
	}
}
