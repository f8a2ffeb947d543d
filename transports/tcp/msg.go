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

// recvMessage implements RecvMessage: messages that arrived before the
// session ended are still delivered, then the session's error.
func (s *session) recvMessage(ctx context.Context) (transport.Message, error) {
	return s.msgs.Recv(ctx, s.done, s.error)
}

// sendMessage implements SendMessage on stream 0. A write that ctx cuts
// short inside the frame tears the stream, and so fails the session.
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	hdr, err := wire.AppendMsgHeader(make([]byte, 0, wire.HeaderSize+4), m.Kind, len(m.Payload))
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	hdr = s.inVersion(hdr)
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
