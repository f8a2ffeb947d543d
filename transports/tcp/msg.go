package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// sendMessage implements SendMessage on stream 0 (writeFrame).
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	hdr, err := sessionbase.MsgHeader("send message", m)
	if err != nil {
		return err
	}
	return s.writeFrame(ctx, s.streams[0], "send message", net.Buffers{s.inVersion(hdr), m.Payload})
}

// writeFrame writes one frame (bufs) of a call (what: "send message",
// "send urgent") on stream st, holding its write lock; waiting for it,
// it returns ctx's error when ctx ends, and so it does, writing
// nothing, when ctx had ended once it holds the lock, and when ctx cut
// its write before any byte went, in plaintext: the session goes on. A
// write that fails otherwise fails the session with CodeFailed and
// returns the session's error: its own (writeFailed says what cut it),
// or, when the session had ended, the reason the wind-down's deadline
// then cut it for. One that stopped inside the frame first marks the
// stream broken, so that no ABORT follows it there (the peer would read
// it as the cut frame's rest); the ABORT goes on the other streams.
//
// Over TLS a cut write fails the session even when none of the frame's
// bytes counted as written: crypto/tls refuses every write after one a
// deadline cut (and counts none of a record it cut half-way, whose
// start the peer may have read), so the stream can carry no frame and
// is marked broken. Until 2026-12-07 such a call returned its context's
// end and the session went on, to fail at the stream's next write with
// "stream 0: connection lost (send message: i/o timeout): transport
// session closed by the peer", naming neither the context nor TLS, of
// class ErrClosed (TestCutTLSWriteSaysWhy); a cut of its context inside
// the frame said "send message: write ...: i/o timeout", and one the
// wind-down cut "stream 0: connection lost (...): transport session
// closed by the peer", of class ErrClosed too (TestCutWriteSaysWhy).
func (s *session) writeFrame(ctx context.Context, st *stream, what string, bufs net.Buffers) error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := st.lock(ctx, s.Done()); err != nil {
		if err == errSessionDone {
			return s.Err()
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		// Ended as the lock came free (lock picks either at random when
		// both are ready): writing now would race the cut its end sets
		// at once, which over TLS breaks the stream even when no byte
		// went (TestEndedContextSendsNothing).
		st.unlock()
		return err
	}
	if st.rc != nil {
		bufs = st.inRecords(bufs)
	}
	size := int64(0)
	for _, b := range bufs {
		size += int64(len(b))
	}
	n, cut, err := writeCtx(ctx, st.conn, bufs)
	st.vec = [2][]byte{} // the caller's payload is theirs again (TestFrameKeepsNoPayload)
	if s.Role == transport.RoleSend {
		s.stats.wire.Add(uint64(n)) // the source counts what it writes
	}
	if err == nil || cut && n == 0 && !st.overTLS() {
		st.unlock()
		if err != nil {
			return ctx.Err()
		}
		return nil
	}
	st.failedAfter(n)
	st.unlock()
	s.fail(st.writeFailed(what, err, cut, ctx.Err(), n, size), wire.CodeFailed)
	return s.Err() // writeFailed's, unless the session had ended: then its end cut the write
}

// maxRecord is the most a TLS record carries: crypto/tls fills records
// up to it (transport.Secure turns its dynamic record sizing off).
const maxRecord = 16 << 10

// inRecords returns frame b (its header, then its payload: writeFrame's
// frames) as it is to go to TLS, in the fewest records: a frame of up
// to maxRecord bytes as one buffer, so one record and one write(2) (a
// message, a request, a one-page answer); a longer one as its header
// joined with its payload's first bytes up to maxRecord, then the rest,
// so that every record but the last is full. The joined bytes are
// copied into the stream's scratch buffer (st.flat, at most maxRecord
// bytes, reused: call with the write lock held); the buffers returned
// are st.vec, which refers to the payload until writeFrame clears it
// once the frame is written. net.Buffers on a TLS
// connection writes each buffer as records of its own, a write(2) each:
// the header went as a record alone, with its own record header, tag
// and system call, and the peer could wake for it alone.
//
// What it does not do: write a frame longer than a record in one
// write(2) (crypto/tls writes each record to the socket on its own; only
// a page batch's records are gathered, by recordConn's hold), nor join
// the header of a page batch (writeBatch), a record of its own that
// goes out gathered with its batch. In plaintext nothing is joined:
// net.Buffers on the socket is one writev(2).
func (st *stream) inRecords(b net.Buffers) net.Buffers {
	if len(b) != 2 || len(b[0]) >= maxRecord {
		return b
	}
	hdr, payload := b[0], b[1]
	k := min(len(payload), maxRecord-len(hdr))
	st.flat = append(append(st.flat[:0], hdr...), payload[:k]...)
	st.vec = [2][]byte{st.flat, payload[k:]}
	if k == len(payload) {
		return st.vec[:1]
	}
	return st.vec[:]
}

// writeCtx writes bufs to c; if ctx ends first, the write is cut short
// through a past deadline, which is then cleared, and cut says so.
func writeCtx(ctx context.Context, c net.Conn, bufs net.Buffers) (n int64, cut bool, err error) {
	var mu sync.Mutex
	finished := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			cut = true
			c.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	n, err = bufs.WriteTo(c)
	stop()
	mu.Lock()
	finished = true
	if cut {
		c.SetWriteDeadline(time.Time{})
	}
	mu.Unlock()
	return n, cut, err
}

// overTLS reports whether the stream's frames travel inside TLS.
func (st *stream) overTLS() bool {
	_, ok := st.conn.(*tls.Conn)
	return ok
}

// failedAfter marks the stream broken after a write that failed once n
// bytes of its frame counted as written: when some did, and over TLS
// whatever did (crypto/tls refuses every write after a failed one, and
// a record it cut half-way counts as none). Call it holding the write
// lock.
func (st *stream) failedAfter(n int64) {
	if n > 0 || st.overTLS() {
		st.broken.Store(true)
	}
}

// writeFailed is the error of a write on st of a size-byte frame (of
// what: "send message", "send urgent", "write batch 7", "ACK") that
// failed with err once n bytes counted as written. A past deadline
// ("i/o timeout") is this side's: the call's context cut the write
// (cut; ctxErr is why) or the session's end did (the wind-down's
// deadline; the caller returns the session's error instead);
// sessionbase.CutWrite says which, and over TLS, whichever of the
// frame's records the cut met, TLS's rules (until 2026-12-08 only a cut
// before any byte counted said them: TestCutTLSWriteSaysWhy, "second
// record"). Any other failure is the connection's (the peer closed or
// reset it, the link broke), of class transport.ErrClosed (connErr).
// What it cannot tell: a deadline that passed as the peer also went
// away.
func (st *stream) writeFailed(what string, err error, cut bool, ctxErr error, n, size int64) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return connErr(st, fmt.Errorf("%s: %w", what, err))
	}
	if !cut {
		ctxErr = nil // the wind-down's deadline, whatever the context did since
	}
	return sessionbase.CutWrite(fmt.Sprintf("stream %d: %s", st.idx, what), "stream", err, ctxErr, n, size, st.overTLS())
}
