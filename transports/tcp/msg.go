package tcp

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// Limits on messages received and not yet taken by RecvMessage: past
// them the peer is flooding and the session fails, so that a stream
// reader never blocks on the engine.
const (
	maxQueuedMsgs  = 4096
	maxQueuedBytes = 64 << 20
)

// msgQueue holds received messages until RecvMessage takes them.
type msgQueue struct {
	mu    sync.Mutex
	q     []transport.Message
	bytes int
	note  chan struct{} // a message arrived
}

func newMsgQueue() msgQueue { return msgQueue{note: make(chan struct{}, 1)} }

func (q *msgQueue) push(m transport.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) >= maxQueuedMsgs || q.bytes+len(m.Payload) > maxQueuedBytes {
		return fmt.Errorf("%w: the peer sent more than %d messages or %d bytes that were not received",
			transport.ErrProtocol, maxQueuedMsgs, maxQueuedBytes)
	}
	q.q = append(q.q, m)
	q.bytes += len(m.Payload)
	select {
	case q.note <- struct{}{}:
	default:
	}
	return nil
}

func (q *msgQueue) pop() (transport.Message, bool) {
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

// recvMessage implements RecvMessage: messages that arrived before the
// session ended are still delivered, then the session's error.
func (s *session) recvMessage(ctx context.Context) (transport.Message, error) {
	return s.recvFrom(ctx, &s.msgs)
}

// recvFrom takes the next message of q (ordinary or urgent): those that
// arrived before the session ended are still delivered, then the
// session's error.
func (s *session) recvFrom(ctx context.Context, q *msgQueue) (transport.Message, error) {
	for {
		if m, ok := q.pop(); ok {
			return m, nil
		}
		select {
		case <-q.note:
		case <-s.done:
			if m, ok := q.pop(); ok {
				return m, nil
			}
			return transport.Message{}, s.error()
		case <-ctx.Done():
			return transport.Message{}, ctx.Err()
		}
	}
}

// sendMessage implements SendMessage on stream 0. A write that ctx cuts
// short inside the frame tears the stream, and so fails the session.
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == 0 || len(m.Payload) > transport.MaxMessage {
		return fmt.Errorf("send message: kind %d with %d bytes (kind 0 is invalid, at most %d bytes)", m.Kind, len(m.Payload), transport.MaxMessage)
	}
	hdr, err := wire.AppendMsgHeader(make([]byte, 0, wire.HeaderSize+4), m.Kind, len(m.Payload))
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	if err := s.error(); err != nil {
		return err
	}
	st := s.streams[0]
	if err := st.lock(ctx, s.done); err != nil {
		if err == errSessionDone {
			return s.error()
		}
		return err
	}
	defer st.unlock()
	n, err := writeCtx(ctx, st.conn, net.Buffers{hdr, m.Payload})
	if s.role == transport.RoleSend {
		s.stats.wire.Add(uint64(n)) // the source counts what it writes
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && n == 0 {
		return ctx.Err()
	}
	st.broken.Store(n > 0)
	err = fmt.Errorf("send message: %w", err)
	if ctx.Err() == nil {
		err = connErr(st, err)
	}
	s.fail(err, wire.CodeFailed)
	return err
}

// writeCtx writes bufs to c; if ctx ends first, the write is cut short
// through a past deadline, which is then cleared.
func writeCtx(ctx context.Context, c net.Conn, bufs net.Buffers) (int64, error) {
	var mu sync.Mutex
	finished, cut := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			cut = true
			c.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	n, err := bufs.WriteTo(c)
	stop()
	mu.Lock()
	finished = true
	if cut {
		c.SetWriteDeadline(time.Time{})
	}
	mu.Unlock()
	return n, err
}
