package loopback

import (
	"context"

	"github.com/ferryvm/ferry/framework/transport"
)

// SendUrgent implements transport.Transport.SendUrgent.
func (t *Transport) SendUrgent(ctx context.Context, m transport.Message) error {
	return transport.ErrNotSupported
}

// RecvUrgent implements transport.Transport.RecvUrgent.
func (t *Transport) RecvUrgent(ctx context.Context) (transport.Message, error) {
	return transport.Message{}, transport.ErrNotSupported
}

// SendPagesUrgent implements transport.Transport.SendPagesUrgent.
func (t *Transport) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	return transport.ErrNotSupported
}

// Landed implements transport.Transport.Landed.
func (t *Transport) Landed(ctx context.Context) ([]transport.PageRun, error) {
	return nil, transport.ErrNotSupported
}
