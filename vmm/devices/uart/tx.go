package uart

import (
	"context"
	"io"
	"sync"
)

// txQueueLimit bounds the bytes waiting for out. At 115200 baud a real UART
// needs about 90 s to send this much.
const txQueueLimit = 1 << 20

// txQueue decouples guest transmission from the host writer: put never
// blocks, and one goroutine writes batches to out.
type txQueue struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when buf grows or closed is set
	buf     []byte    // bytes waiting to be written
	spare   []byte    // the buffer being written, reused for the next batch
	closed  bool
	dropped uint64
	err     error // first error returned by out
	done    chan struct{}
}

func newTXQueue(out io.Writer) *txQueue {
	q := &txQueue{done: make(chan struct{})}
	q.cond.L = &q.mu
	go q.run(out)
	return q
}

// put queues b, or drops and counts it if the queue is full or closed.
func (q *txQueue) put(b byte) {
	q.mu.Lock()
	if q.closed || len(q.buf) >= txQueueLimit {
		q.dropped++
	} else {
		q.buf = append(q.buf, b)
		q.cond.Signal()
	}
	q.mu.Unlock()
}

// run writes queued bytes to out until the queue is closed and empty.
func (q *txQueue) run(out io.Writer) {
	defer close(q.done)
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.buf) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.buf) == 0 {
			return
		}
		batch := q.buf
		q.buf = q.spare[:0]
		q.mu.Unlock()
		n, err := out.Write(batch)
		q.mu.Lock()
		if err != nil {
			q.dropped += uint64(len(batch) - min(n, len(batch)))
			if q.err == nil {
				q.err = err
			}
		}
		q.spare = batch[:0]
	}
}

// Close stops accepting output (later THR writes are dropped and counted),
// waits until everything queued has been written to out, and returns the
// first error out returned, if any. If ctx ends first, Close returns
// ctx.Err(); the writer goroutine then exits when out's pending Write
// returns. Close may be called more than once.
func (u *UART) Close(ctx context.Context) error {
	q := u.tx
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Dropped returns how many transmitted bytes never reached out: the queue
// was full, the UART was closed, or out returned an error.
func (u *UART) Dropped() uint64 {
	u.tx.mu.Lock()
	defer u.tx.mu.Unlock()
	return u.tx.dropped
}
