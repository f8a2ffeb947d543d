package tcp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"weak"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// writeLog records the sizes of the writes that reach a socket: under
// TLS, one write is one record (recordConn outside a batch's hold).
type writeLog struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (c *writeLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.sizes = append(c.sizes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// since is the sizes written after the first n.
func (c *writeLog) since(n int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.sizes[n:]...)
}

func (c *writeLog) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sizes)
}

// TestFrameRecords: over TLS a message on stream 0 and an urgent frame
// go as one TLS record (one write to the socket) when they fit in one,
// and a longer one as the fewest records that hold it, the header
// travelling with the payload's first bytes, never as a record of its
// own; the peer reads the same bytes. Before, SendMessage wrote the
// header and the payload as records of their own (two writes for a
// small message), and an urgent frame over 16 KiB did so too.
func TestFrameRecords(t *testing.T) {
	const streams = 2
	logs := map[int]*writeLog{}
	var mu sync.Mutex
	sendTr := New(testLogger(t))
	sendTr.wrapRaw = func(idx int, c net.Conn) net.Conn {
		mu.Lock()
		defer mu.Unlock()
		logs[idx] = &writeLog{Conn: c}
		return logs[idx]
	}
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	src, dst := newVM(t, layout), newVM(t, layout)
	for p := range src.pages() {
		src.page(p)[0] = byte(p + 1)
	}
	send, recv := openPairWith(t, sendTr, src, dst, cfg(freeAddr(t), streams, "none"), false)
	ctx := ctxT(t)
	const record = 16 << 10 // the most a TLS record carries (transport.Secure: no dynamic sizing)
	records := func(frame int) int { return (frame + record - 1) / record }
	msgHeader := wire.HeaderSize + 4
	check := func(what string, log *writeLog, frame int, send func() error, got func() error) {
		t.Helper()
		before := log.count()
		if err := send(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sizes := log.since(before)
		if err := got(); err != nil {
			t.Fatalf("%s: the peer: %v", what, err)
		}
		if want := records(frame); len(sizes) != want {
			t.Errorf("%s (a frame of %d bytes) reached the socket as %d writes %v, want %d (TLS records)",
				what, frame, len(sizes), sizes, want)
		}
	}
	for _, size := range []int{0, 100, record - msgHeader, record - msgHeader + 1, 40 << 10, transport.MaxMessage} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		m := transport.Message{Kind: 3, Payload: payload}
		same := func(got transport.Message, err error) error {
			if err == nil && (got.Kind != m.Kind || !bytes.Equal(got.Payload, payload)) {
				err = fmt.Errorf("read kind %d with %d bytes, want kind %d with %d bytes", got.Kind, len(got.Payload), m.Kind, size)
			}
			return err
		}
		check(fmt.Sprintf("SendMessage of %d bytes", size), logs[0], msgHeader+size,
			func() error { return send.SendMessage(ctx, m) },
			func() error { return same(recv.RecvMessage(ctx)) })
		check(fmt.Sprintf("SendUrgent of %d bytes", size), logs[streams], msgHeader+size,
			func() error { return send.SendUrgent(ctx, m) },
			func() error { return same(recv.RecvUrgent(ctx)) })
	}
	armed, arm := context.WithCancel(ctx)
	arm()
	recv.Landed(armed) // asks for landed runs from now on, and returns at once
	for _, pages := range []uint64{1, 5, 64} {
		first := uint64(batchPages) - pages // within one cell of the grid: one frame
		check(fmt.Sprintf("SendPagesUrgent of %d pages", pages), logs[streams], wire.HeaderSize+wire.RunSize+int(pages)*pageSize,
			func() error {
				return send.SendPagesUrgent(ctx, []transport.PageRun{{First: first, Count: pages, Kind: transport.KindData}})
			},
			func() error {
				for landed := uint64(0); landed < pages; {
					runs, err := recv.Landed(ctx)
					if err != nil {
						return err
					}
					for _, r := range runs {
						landed += r.Count
					}
				}
				for p := first; p < first+pages; p++ {
					if !bytes.Equal(dst.page(p), src.page(p)) {
						return fmt.Errorf("page %d landed with other contents than the source's", p)
					}
				}
				return nil
			})
	}
}

// TestFrameKeepsNoPayload: once SendMessage and SendUrgent return over
// TLS, the stream keeps no reference to the caller's payload, whose
// memory the caller may drop: a small frame's buffers (inRecords) held
// the array under the payload until the stream's next frame, so a
// message of 100 bytes sliced from a buffer of 1 MiB kept the MiB.
func TestFrameKeepsNoPayload(t *testing.T) {
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	send, recv := openPair(t, newVM(t, layout), newVM(t, layout), cfg(freeAddr(t), 1, "none"))
	ctx := ctxT(t)
	for _, c := range []struct {
		what string
		send func(transport.Message) error
		recv func() (transport.Message, error)
	}{
		{"SendMessage", func(m transport.Message) error { return send.SendMessage(ctx, m) },
			func() (transport.Message, error) { return recv.RecvMessage(ctx) }},
		{"SendUrgent", func(m transport.Message) error { return send.SendUrgent(ctx, m) },
			func() (transport.Message, error) { return recv.RecvUrgent(ctx) }},
	} {
		for _, size := range []int{100, 40 << 10} {
			buf := new([1 << 20]byte)
			kept := weak.Make(buf)
			if err := c.send(transport.Message{Kind: 3, Payload: buf[:size]}); err != nil {
				t.Fatalf("%s of %d bytes: %v", c.what, size, err)
			}
			buf = nil
			if m, err := c.recv(); err != nil || len(m.Payload) != size {
				t.Fatalf("%s of %d bytes: the peer read %d bytes, %v", c.what, size, len(m.Payload), err)
			}
			runtime.GC()
			if kept.Value() != nil {
				t.Errorf("%s of %d bytes: the payload's memory is still referenced after the call returned", c.what, size)
			}
		}
	}
}
