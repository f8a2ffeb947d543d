package tcp

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// sendMessage implements SendMessage on stream 0. A write that ctx cuts
// short inside the frame tears the stream, and so fails the session.
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	hdr, err := sessionbase.MsgHeader("send message", m)
	if err != nil {
		return err
	}
	hdr = s.inVersion(hdr)
	if err := s.Err(); err != nil {
		return err
	}
	st := s.streams[0]
	if err := st.lock(ctx, s.Done()); err != nil {
		if err == errSessionDone {
			return s.Err()
		}
		return err
	}
	defer st.unlock()
	n, err := writeCtx(ctx, st.conn, net.Buffers{hdr, m.Payload})
	if s.Role == transport.RoleSend {
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
