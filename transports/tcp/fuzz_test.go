//go:build linux

package tcp

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// readLoopSeeds are frames an authenticated source may send, good and bad;
// testdata/fuzz/FuzzReadLoop holds them too (go test -run FuzzReadLoop
// replays it; go test -fuzz FuzzReadLoop explores from it).
func readLoopSeeds() [][]byte {
	data := junk(2*pageSize, 1)
	pages, _ := wire.AppendPages(nil, 1, wire.Run{First: 3, Count: 2}, false, data)
	zero, _ := wire.AppendZero(nil, 2, wire.Run{First: 600, Count: 100})
	msg, _ := wire.AppendMsg(nil, 7, []byte("state"))
	outside, _ := wire.AppendZero(nil, 1, wire.Run{First: 1 << 40, Count: 1})
	lz4, _ := wire.AppendPages(nil, 1, wire.Run{First: 9, Count: 1}, true, []byte{0x1f, 0, 1, 0, 0xff})
	stride, _ := wire.AppendZero(nil, 3, wire.Run{First: 100, Count: 600, Cell: batchPages, Every: 1})
	otherStride, _ := wire.AppendZero(nil, 1, wire.Run{First: 0, Count: 600, Cell: batchPages, Every: 2})
	good := append(append(append(append(pages, zero...), stride...), msg...), wire.AppendBye(nil, "done")...)
	return [][]byte{
		good, outside, lz4, wire.AppendAck(nil, 1), junk(64, 2), wire.AppendAbort(nil, wire.CodeFailed, "x"), otherStride,
		inVersion1(good),                   // a source of the previous wire version
		append(inVersion1(pages), zero...), // one that changes version midway
	}
}

// inVersion1 is a copy of frames (no HELLO) in wire version 1.
func inVersion1(frames []byte) []byte {
	b := append([]byte(nil), frames...)
	for f := b; len(f) >= wire.HeaderSize; {
		h, err := wire.ParseHeader(f)
		if err != nil {
			panic(err)
		}
		wire.SetVersion(f, 1)
		f = f[wire.HeaderSize+int(h.Length):]
	}
	return b
}

// FuzzReadLoop feeds bytes to a destination stream's read loop (the frame
// path after authentication, plaintext) over guest RAM mapped from a
// memfd: whatever arrives, the loop ends the session without a panic or
// a hang, and writes nothing outside guest RAM (the mapping would fault).
func FuzzReadLoop(f *testing.F) {
	for _, s := range readLoopSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := newVM(t, testLayout)
		m, err := mapRAM(dst.request(transport.RoleReceive, nil), true)
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(transport.RoleReceive, hclog.NewNullLogger(), config{streams: 1}, m, &counters{})
		feed, in := tcpPair(t)
		s.streams = []*stream{newStream(0, in, in)}
		go func() {
			feed.Write(data)
			feed.CloseWrite()
			io.Copy(io.Discard, feed) // ACKs and the final ABORT
		}()
		s.start()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("the read loop did not end on %d bytes and EOF", len(data))
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
	})
}

// tcpPair returns both ends of a loopback connection.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	return c.(*net.TCPConn), a.(*net.TCPConn)
}

// urgentSeeds are frames a source may send on its urgent stream, good
// and bad.
func urgentSeeds() [][]byte {
	page, _ := wire.AppendPages(nil, 1, wire.Run{First: 5, Count: 1}, false, junk(pageSize, 3))
	zero, _ := wire.AppendZero(nil, 2, wire.Run{First: 300, Count: 4})
	msg, _ := wire.AppendMsg(nil, 11, []byte("request"))
	cross, _ := wire.AppendZero(nil, 3, wire.Run{First: batchPages - 1, Count: 2})
	outside, _ := wire.AppendZero(nil, 4, wire.Run{First: 1 << 40, Count: 1})
	stride, _ := wire.AppendZero(nil, 5, wire.Run{First: 0, Count: 600, Cell: batchPages, Every: 1})
	lz4, _ := wire.AppendPages(nil, 6, wire.Run{First: 9, Count: 1}, true, []byte{0x1f, 0, 1, 0, 0xff})
	good := append(append(append(page, zero...), msg...), wire.AppendBye(nil, "done")...)
	return [][]byte{good, cross, outside, stride, lz4, inVersion1(good), wire.AppendAck(nil, 1),
		wire.AppendAbort(nil, wire.CodeFailed, "x")}
}

// FuzzUrgentLoop feeds bytes to a destination's urgent stream (urgent
// pages and messages after authentication, plaintext) over guest RAM
// mapped from a memfd, beside one bulk stream that says only BYE:
// whatever arrives, the loop ends the session without a panic or a
// hang, writes nothing outside guest RAM (the mapping would fault), and
// reports as landed only runs inside RAM. It does not exercise an urgent
// write racing a bulk one, nor the source's side (FuzzClaim in
// framework/transport covers the requests it answers).
func FuzzUrgentLoop(f *testing.F) {
	for _, s := range urgentSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := newVM(t, testLayout)
		m, err := mapRAM(dst.request(transport.RoleReceive, nil), true)
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(transport.RoleReceive, hclog.NewNullLogger(), config{streams: 1}, m, &counters{})
		bulkFeed, bulkIn := tcpPair(t)
		feed, in := tcpPair(t)
		s.streams = []*stream{newStream(0, bulkIn, bulkIn)}
		s.urgent = newStream(1, in, in)
		s.urgent.urgent = true
		var landed []transport.PageRun
		var mu sync.Mutex
		s.Landed.Attach(func(rs []transport.PageRun) {
			mu.Lock()
			landed = append(landed, rs...)
			mu.Unlock()
		}, func(error) {})
		go func() {
			feed.Write(data)
			feed.CloseWrite()
			io.Copy(io.Discard, feed) // the final ABORT
		}()
		go func() {
			bulkFeed.Write(wire.AppendBye(nil, "done")) // the session ends as the urgent stream does
			bulkFeed.CloseWrite()
			io.Copy(io.Discard, bulkFeed)
		}()
		s.start()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("the urgent loop did not end on %d bytes and EOF", len(data))
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range landed {
			if r.Count == 0 || r.First+r.Count < r.First || r.First+r.Count > m.Pages {
				t.Fatalf("landed %d+%d in a guest of %d pages", r.First, r.Count, m.Pages)
			}
		}
	})
}
