package transport

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework/schema"
)

// Mock is a Transport made of closures, for tests of code that uses a
// transport. A nil closure makes its method fail with ErrNotSupported.
// Mock itself checks nothing: OpenFunc gets the whole OpenRequest, Tag
// included, and a test that needs the migration tag rule
// (Transport, "Migration tag") applies it there (RefuseOtherTag).
type Mock struct {
	InfoFunc        func(ctx context.Context) (Info, error)
	SchemaFunc      func(ctx context.Context) (schema.Schema, error)
	OpenFunc        func(ctx context.Context, req OpenRequest) error
	SendPagesFunc   func(ctx context.Context, runs []PageRun) error
	FlushFunc       func(ctx context.Context) error
	SendMessageFunc func(ctx context.Context, m Message) error
	RecvMessageFunc func(ctx context.Context) (Message, error)
	StatsFunc       func(ctx context.Context) (Stats, error)
	CloseFunc       func() error

	SendUrgentFunc      func(ctx context.Context, m Message) error
	RecvUrgentFunc      func(ctx context.Context) (Message, error)
	SendPagesUrgentFunc func(ctx context.Context, runs []PageRun) error
	LandedFunc          func(ctx context.Context) ([]PageRun, error)

	// ValidateFunc serves Validator (validate.go).
	ValidateFunc func(ctx context.Context, cfg schema.Config) error
}

var _ Transport = (*Mock)(nil)

// Info implements Transport.Info.
func (m *Mock) Info(ctx context.Context) (Info, error) {
	if m.InfoFunc == nil {
		return Info{}, ErrNotSupported
	}
	return m.InfoFunc(ctx)
}

// Schema implements Transport.Schema.
func (m *Mock) Schema(ctx context.Context) (schema.Schema, error) {
	if m.SchemaFunc == nil {
		return nil, ErrNotSupported
	}
	return m.SchemaFunc(ctx)
}

// Open implements Transport.Open.
func (m *Mock) Open(ctx context.Context, req OpenRequest) error {
	if m.OpenFunc == nil {
		return ErrNotSupported
	}
	return m.OpenFunc(ctx, req)
}

// SendPages implements Transport.SendPages.
func (m *Mock) SendPages(ctx context.Context, runs []PageRun) error {
	if m.SendPagesFunc == nil {
		return ErrNotSupported
	}
	return m.SendPagesFunc(ctx, runs)
}

// Flush implements Transport.Flush.
func (m *Mock) Flush(ctx context.Context) error {
	if m.FlushFunc == nil {
		return ErrNotSupported
	}
	return m.FlushFunc(ctx)
}

// SendMessage implements Transport.SendMessage.
func (m *Mock) SendMessage(ctx context.Context, msg Message) error {
	if m.SendMessageFunc == nil {
		return ErrNotSupported
	}
	return m.SendMessageFunc(ctx, msg)
}

// RecvMessage implements Transport.RecvMessage.
func (m *Mock) RecvMessage(ctx context.Context) (Message, error) {
	if m.RecvMessageFunc == nil {
		return Message{}, ErrNotSupported
	}
	return m.RecvMessageFunc(ctx)
}

// Stats implements Transport.Stats.
func (m *Mock) Stats(ctx context.Context) (Stats, error) {
	if m.StatsFunc == nil {
		return Stats{}, ErrNotSupported
	}
	return m.StatsFunc(ctx)
}

// Close implements Transport.Close.
func (m *Mock) Close() error {
	if m.CloseFunc == nil {
		return ErrNotSupported
	}
	return m.CloseFunc()
}

// SendUrgent implements Transport.SendUrgent.
func (m *Mock) SendUrgent(ctx context.Context, msg Message) error {
	if m.SendUrgentFunc == nil {
		return ErrNotSupported
	}
	return m.SendUrgentFunc(ctx, msg)
}

// RecvUrgent implements Transport.RecvUrgent.
func (m *Mock) RecvUrgent(ctx context.Context) (Message, error) {
	if m.RecvUrgentFunc == nil {
		return Message{}, ErrNotSupported
	}
	return m.RecvUrgentFunc(ctx)
}

// SendPagesUrgent implements Transport.SendPagesUrgent.
func (m *Mock) SendPagesUrgent(ctx context.Context, runs []PageRun) error {
	if m.SendPagesUrgentFunc == nil {
		return ErrNotSupported
	}
	return m.SendPagesUrgentFunc(ctx, runs)
}

// Landed implements Transport.Landed.
func (m *Mock) Landed(ctx context.Context) ([]PageRun, error) {
	if m.LandedFunc == nil {
		return nil, ErrNotSupported
	}
	return m.LandedFunc(ctx)
}

// RefuseOtherTag is the migration tag rule for a mock's OpenFunc: it
// returns an error wrapping ErrWrongMigration when a receiving Open
// with a non-zero tag meets a sender whose tag differs, nil otherwise.
func RefuseOtherTag(receiving, sending Tag) error {
	if receiving.IsZero() || receiving == sending {
		return nil
	}
	return fmt.Errorf("%w: the sender names %x, the receiver waits for %x", ErrWrongMigration, sending[:4], receiving[:4])
}
