package tcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
)

// recordConn is the socket under a stream's TLS connection. TLS reads
// and writes it one record (at most 16 KiB) at a time, a system call
// each: 64 per MiB of pages each way, at 2.8 µs a call here. recordConn
// reads ahead through a buffer of recordBuffer bytes, and while a batch
// is written (hold, from begin to end) it gathers the records and writes
// them recordBuffer at a time. Everything else (ACKs, messages, the
// urgent stream, TLS's own alerts) is written at once.
//
//	tls.Conn ── Read (one record) ──► bufio (one read(2) per ≤ 256 KiB) ◄── socket
//	         ── Write (one record) ─► gathered while held ─ write(2) ≤ 256 KiB ─► socket
type recordConn struct {
	net.Conn
	r *bufio.Reader

	mu   sync.Mutex
	hold bool
	w    []byte // records gathered while held
}

// recordBuffer is the read-ahead and the write gather size.
const recordBuffer = 256 << 10

func newRecordConn(c net.Conn) *recordConn {
	return &recordConn{Conn: c, r: bufio.NewReaderSize(c, recordBuffer)}
}

// Read reads through the read-ahead buffer.
func (c *recordConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write gathers p while held, else writes it (after what was gathered).
func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		if len(c.w)+len(p) > recordBuffer {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		if len(p) <= recordBuffer {
			if c.w == nil {
				c.w = make([]byte, 0, recordBuffer)
			}
			c.w = append(c.w, p...)
			return len(p), nil
		}
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// begin starts gathering records: the caller holds the stream's write
// lock and calls end when its frame is written.
func (c *recordConn) begin() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

// end writes what was gathered and stops gathering. An error means part
// of a frame may be on the wire.
func (c *recordConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	return c.flushLocked()
}

func (c *recordConn) flushLocked() error {
	if len(c.w) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.w)
	c.w = c.w[:0]
	return err
}

// secure authenticates c (transport.Secure); with encryption the TLS
// connection runs over a recordConn, returned too (nil in plaintext).
func secure(ctx context.Context, c net.Conn, role transport.Role, auth *tls.Config, plain bool) (net.Conn, *recordConn, error) {
	if plain {
		sc, err := transport.Secure(ctx, c, role, auth, plain)
		return sc, nil, err
	}
	rc := newRecordConn(c)
	sc, err := transport.Secure(ctx, rc, role, auth, plain)
	return sc, rc, err
}
