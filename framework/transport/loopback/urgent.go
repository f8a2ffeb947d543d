package loopback

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
)

// SendUrgent implements transport.Transport.SendUrgent.
func (t *Transport) SendUrgent(ctx context.Context, m transport.Message) error {
	s := t.session()
	if err := sendable(s, m, "urgent message"); err != nil {
		return err
	}
	return s.send(ctx, func(b []byte) ([]byte, error) { return appendMsgOf(b, frameUMsg, m), nil })
}

// RecvUrgent implements transport.Transport.RecvUrgent. Messages that
// arrived before the session ended are still returned.
func (t *Transport) RecvUrgent(ctx context.Context) (transport.Message, error) {
	s := t.session()
	if s == nil {
		return transport.Message{}, errNotOpen
	}
	return s.recvFrom(ctx, &s.umsgs)
}

// SendPagesUrgent implements transport.Transport.SendPagesUrgent: each
// frame is read and written before it returns, tagged with the bulk
// frames written so far. SendPages has no queue here (a frame is queued
// when it is written) and the one connection keeps frames in order, so
// every bulk frame tagged as earlier arrives before the urgent one and
// the receiver's Lane never has to drop a copy; it is there to enforce
// the rule should either change.
func (t *Transport) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	s := t.session()
	if s == nil {
		return errNotOpen
	}
	if s.role != transport.RoleSend {
		return fmt.Errorf("%w: SendPagesUrgent on the receiving side", transport.ErrNotSupported)
	}
	for _, r := range runs {
		if err := r.Check(s.ram.pages); err != nil {
			return err
		}
	}
	for _, r := range runs {
		for first, left := r.First, r.Count; left > 0; {
			n := min(left, pagesPerFrame)
			chunk := transport.PageRun{First: first, Count: n, Kind: r.Kind}
			err := s.send(ctx, func(b []byte) ([]byte, error) {
				b = binary.BigEndian.AppendUint64(appendHeader(b, frameUPage), s.bulkQueued.Load())
				b, err := s.appendRunBody(b, chunk)
				if err != nil {
					return nil, err
				}
				return finish(b), nil
			})
			if err != nil {
				return err
			}
			first, left = first+n, left-n
		}
	}
	return nil
}

// Landed implements transport.Transport.Landed.
func (t *Transport) Landed(ctx context.Context) ([]transport.PageRun, error) {
	s := t.session()
	if s == nil {
		return nil, errNotOpen
	}
	if s.role != transport.RoleReceive {
		return nil, fmt.Errorf("%w: Landed on the sending side", transport.ErrNotSupported)
	}
	return s.landed.Wait(ctx)
}
