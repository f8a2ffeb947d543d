package rdma

import (
	"context"
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// Limits on messages received and not yet taken by RecvMessage.
const (
	maxQueuedMsgs  = 4096
	maxQueuedBytes = 64 << 20
)

// msgQueue holds received messages until RecvMessage takes them.
type msgQueue struct {
	mu    sync.Mutex
	q     []transport.Message
	bytes int
	note  chan struct{}
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
	for {
		if m, ok := s.msgs.pop(); ok {
			return m, nil
		}
		select {
		case <-s.msgs.note:
		case <-s.done:
			if m, ok := s.msgs.pop(); ok {
				return m, nil
			}
			return transport.Message{}, s.error()
		case <-ctx.Done():
			return transport.Message{}, ctx.Err()
		}
	}
}

// sendMessage implements SendMessage over the control channel (inside
// TLS unless the credentials are plaintext).
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == 0 || len(m.Payload) > transport.MaxMessage {
		return fmt.Errorf("send message: kind %d with %d bytes (kind 0 is invalid, at most %d bytes)", m.Kind, len(m.Payload), transport.MaxMessage)
	}
	hdr, err := wire.AppendMsgHeader(nil, m.Kind, len(m.Payload))
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	return s.writeFrame(ctx, hdr, m.Payload)
}
