package inbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
)

// Limits on messages received and not yet taken: past them the peer is
// flooding and the session fails, so that a stream reader never blocks
// on the engine.
const (
	MaxMsgs  = 4096
	MaxBytes = 64 << 20
)

// Queue is a FIFO of received messages. Push and Recv may run
// concurrently; make one with New.
type Queue struct {
	mu    sync.Mutex
	q     []transport.Message
	bytes int
	note  chan struct{} // a message arrived

	// A pusher's (Attach): messages go to push as they arrive, the end
	// to ended, once.
	push  func(transport.Message) error
	ended func(error)
	err   error // End's, kept for a later Attach
}

// New returns an empty Queue.
func New() Queue { return Queue{note: make(chan struct{}, 1)} }

// Push appends m without blocking. Past MaxMsgs messages or MaxBytes
// payload bytes it refuses m with an error wrapping
// transport.ErrProtocol; the caller then fails the session.
func (q *Queue) Push(m transport.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.push != nil {
		if q.err != nil {
			return nil // the session ended: the pusher heard the last of it
		}
		return q.push(m)
	}
	if len(q.q) >= MaxMsgs || q.bytes+len(m.Payload) > MaxBytes {
		return fmt.Errorf("%w: the peer sent more than %d messages or %d bytes that were not received",
			transport.ErrProtocol, MaxMsgs, MaxBytes)
	}
	q.q = append(q.q, m)
	q.bytes += len(m.Payload)
	select {
	case q.note <- struct{}{}:
	default:
	}
	return nil
}

// Held is the number of messages waiting for Recv or Pop (none once a
// pusher attached: Attach hands them over).
func (q *Queue) Held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

// Pop takes the oldest message, if there is one.
func (q *Queue) Pop() (transport.Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return transport.Message{}, false
	}
	m := q.q[0]
	q.q[0] = transport.Message{}
	q.q = q.q[1:]
	q.bytes -= len(m.Payload)
	return m, true
}

// Recv takes the oldest message, blocking until one arrives, done is
// closed or ctx ends. Messages that arrived before done closed are
// still delivered; then Recv returns ended(), the session's error.
func (q *Queue) Recv(ctx context.Context, done <-chan struct{}, ended func() error) (transport.Message, error) {
	for {
		if m, ok := q.Pop(); ok {
			return m, nil
		}
		select {
		case <-q.note:
		case <-done:
			if m, ok := q.Pop(); ok {
				return m, nil
			}
			return transport.Message{}, ended()
		case <-ctx.Done():
			return transport.Message{}, ctx.Err()
		}
	}
}

// Attach gives the queue to a pusher (transport.Pusher.PushUrgent): the
// messages held so far, then each one Push receives, go to push, in
// order, on Push's goroutine and under the queue's lock (push's error is
// Push's); the session's end (End) goes to ended, once, after the last
// message. Recv and Pop must not be called any more. An error from push
// while the held messages are handed over is returned.
func (q *Queue) Attach(push func(transport.Message) error, ended func(error)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.q) > 0 {
		m := q.q[0]
		q.q[0] = transport.Message{}
		q.q = q.q[1:]
		q.bytes -= len(m.Payload)
		if err := push(m); err != nil {
			return err
		}
	}
	q.push, q.ended = push, ended
	if q.err != nil {
		q.end()
	}
	return nil
}

// End tells a pusher (Attach) that the session ended with err, after the
// messages it already has; Push drops what comes later. Without a pusher
// it only keeps err for one that attaches later (Recv learns of the end
// from its done channel).
func (q *Queue) End(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		q.err = err
	}
	q.end()
}

func (q *Queue) end() {
	if q.ended != nil {
		q.ended(q.err)
		q.ended = nil
	}
}
