package rdma

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// What the four paths (bulk and urgent, each on the source and the
// destination) do alike on their endpoint: register guest RAM, keep
// registered buffers for COMMITs, poll completions.

// register registers every guest RAM region on e for access and hands
// each registration to keep. A registration the peer writes into
// (fabric.AccessRemoteWrite) gets a key that fits the provider's key
// size; what says what for, in the error.
func (m *ram) register(e *fabric.Endpoint, access fabric.Access, what string, keep func(*region, *fabric.MR)) error {
	c := e.Caps()
	for i, r := range m.regions {
		key := randomKey()
		if access == fabric.AccessRemoteWrite && c.KeySize > 0 && c.KeySize < 8 {
			key &= 1<<(8*c.KeySize) - 1
		}
		mr, err := e.Register(r.mem, access, key)
		if err != nil {
			return fmt.Errorf("register guest RAM region %d (%d MiB) %s: %w%s", i, len(r.mem)>>20, what, err, memlockHint(c))
		}
		keep(r, mr)
	}
	return nil
}

// buffers are anonymous memory registered on one endpoint: the COMMITs
// (and MARKs) a side sends or receives.
type buffers struct {
	buf   []byte
	bufMR *fabric.MR
}

// open maps size bytes and registers them on e for access; what names
// them in the error.
func (b *buffers) open(e *fabric.Endpoint, size int, access fabric.Access, what string) error {
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	b.buf = m
	if b.bufMR, err = e.Register(m, access, randomKey()); err != nil {
		return fmt.Errorf("register %s: %w", what, err)
	}
	return nil
}

// postRecvs posts the buffers as n receive slots of size bytes, slot i
// with completion context ctx0+i; what names them in the error.
func (b *buffers) postRecvs(e *fabric.Endpoint, n, size, ctx0 int, what string) error {
	for i := range n {
		if err := e.Recv(b.buf[i*size:(i+1)*size], b.bufMR, uint64(ctx0+i)); err != nil {
			return fmt.Errorf("post %s: %w", what, err)
		}
	}
	return nil
}

func (b *buffers) release() {
	if b.buf != nil {
		unix.Munmap(b.buf)
		b.buf = nil
	}
}

// Poll waits: idle, and on a source while operations are in flight.
// The software providers move a source's posted writes only inside a
// call into the provider, and fi_cq_sread (tcp provider, libfabric 1.17)
// does not wake when the socket can take more: once the engine stops
// posting (in Flush) the rest of a batch moved one socket buffer per
// timeout. Measured with BenchmarkTransport rdma-tcp-warm (2026-12-05
// 04:24, load 5-8): Flush waited 630-770 ms per GiB at 10 ms, 120-150 at
// 1 ms, at the same CPU per GiB. On verbs a completion wakes the wait,
// so the shorter timeout costs nothing there.
const (
	pollIdle = 10 * time.Millisecond
	pollBusy = time.Millisecond
)

// poll polls q's endpoint until the session ends and hands each batch
// of completions to q.take: waiting pollBusy while operations are in
// flight, pollIdle otherwise, and not at all while a poster drives q. A
// failed poll fails the session (q.name says which endpoint and why that
// may be); an error from take fails it, telling the peer by
// sessionbase.AbortCode (a protocol violation only when the peer's).
func (s *session) poll(q *queue, cs []fabric.Completion) {
	for {
		select {
		case <-s.Done():
			return
		default:
		}
		if q.driving.Load() {
			if !s.standBy(q, cs) {
				return
			}
			continue
		}
		wait := pollIdle
		if q.inflight.Load() > 0 {
			wait = pollBusy
		}
		q.polling.Lock()
		if q.driving.Load() { // a poster began to drive while this waited
			q.polling.Unlock()
			continue
		}
		ok := s.pollOnce(q, cs, wait)
		q.polling.Unlock()
		if !ok {
			return
		}
	}
}

// standBy waits while a poster drives q, until it stops or the session
// ends (false). Every pollIdle it moves what is posted with one Poll that
// does not wait, in case the poster waits elsewhere longer than it
// should.
func (s *session) standBy(q *queue, cs []fabric.Completion) bool {
	t := time.NewTimer(pollIdle)
	defer t.Stop()
	select {
	case <-q.resume:
	case <-s.Done():
		return false
	case <-t.C:
		if q.polling.TryLock() {
			ok := s.pollOnce(q, cs, 0)
			q.polling.Unlock()
			return ok
		}
	}
	return true
}

// pollOnce polls q's endpoint once, waiting up to wait for the first
// completion, and hands what it got to q.take; the caller holds
// q.polling. It reports false once the session failed (a failed poll
// fails it with CodeFailed, an error from take with the code
// sessionbase.AbortCode gives: CodeProtocol when it wraps
// transport.ErrProtocol, the peer's fault, else CodeFailed, a fault of
// this side's such as re-posting a receive buffer).
func (s *session) pollOnce(q *queue, cs []fabric.Completion, wait time.Duration) bool {
	if q.pace != nil {
		q.pace()
	}
	n, err := q.ep.Poll(cs, wait)
	if err != nil {
		s.fail(fmt.Errorf("fabric: %s%w: %w", q.name, err, transport.ErrClosed), wire.CodeFailed)
		return false
	}
	if n == 0 {
		return true
	}
	if err := q.take(cs[:n]); err != nil {
		s.fail(err, sessionbase.AbortCode(err))
		return false
	}
	return true
}

// wake sends on a notification channel of capacity 1 without blocking.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
