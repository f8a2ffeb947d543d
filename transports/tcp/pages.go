package tcp

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// sendPages implements SendPages: it checks every run, waits for an
// unfinished Flush, then queues the runs as batches.
func (s *session) sendPages(ctx context.Context, runs []transport.PageRun) error {
	for _, r := range runs {
		if r.Kind != transport.KindData && r.Kind != transport.KindZero {
			return fmt.Errorf("send pages: run %d+%d has kind %d", r.First, r.Count, r.Kind)
		}
		if r.Count == 0 || r.First >= s.ram.Pages || r.Count > s.ram.Pages-r.First {
			return fmt.Errorf("send pages: run %d+%d is outside guest RAM (%d pages)", r.First, r.Count, s.ram.Pages)
		}
	}
	if err := s.waitFlush(ctx); err != nil {
		return err
	}
	for _, r := range runs {
		for p, end := r.First, r.First+r.Count; p < end; {
			reg := s.ram.find(p)
			regEnd := min(end, reg.first+reg.pages)
			gridEnd := (p/batchPages + 1) * batchPages
			if r.Kind == transport.KindZero && regEnd > gridEnd {
				n := min(regEnd-p, wire.MaxZeroPages)
				if err := s.enqueueZeros(ctx, p, p+n); err != nil {
					return err
				}
				p += n
				continue
			}
			n := min(regEnd, gridEnd) - p
			b := batch{kind: r.Kind, first: p, count: uint32(n)}
			if r.Kind == transport.KindData {
				b.reg = reg
			}
			if err := s.enqueue(ctx, s.stream(p), b); err != nil {
				return err
			}
			p += n
		}
	}
	return nil
}

// stream is the stream that carries page p (the grid).
func (s *session) stream(p uint64) *stream {
	return s.streams[(p/batchPages)%uint64(len(s.streams))]
}

// enqueueZeros queues zero pages [first, end) (within one region, more
// than one grid cell, at most wire.MaxZeroPages) as one strided ZERO
// batch per stream: each covers the stream's own cells of the range, so
// every page still travels on its stream, and a hole of any size costs a
// frame per stream, not one per cell.
func (s *session) enqueueZeros(ctx context.Context, first, end uint64) error {
	for i := range uint64(len(s.streams)) {
		p := max(first, (first/batchPages+i)*batchPages)
		if p >= end {
			break
		}
		b := batch{kind: transport.KindZero, first: p, count: uint32(end - p), strided: true}
		if err := s.enqueue(ctx, s.stream(p), b); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) enqueue(ctx context.Context, st *stream, b batch) error {
	b.seq = st.queued.Load() + 1
	select {
	case st.queue <- b:
		st.queued.Store(b.seq)
		return nil
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush implements Flush.
func (s *session) flush(ctx context.Context) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.flushTarget = s.flushTarget[:0]
	for _, st := range s.streams {
		s.flushTarget = append(s.flushTarget, st.queued.Load())
	}
	s.flushPending = true
	return s.waitFlush(ctx)
}

// waitFlush waits until the last Flush's batches are acknowledged.
func (s *session) waitFlush(ctx context.Context) error {
	for s.flushPending {
		done := true
		for i, st := range s.streams {
			if st.acked.Load() < s.flushTarget[i] {
				done = false
				break
			}
		}
		if done {
			s.flushPending = false
			return nil
		}
		select {
		case <-s.ackNote:
		case <-s.Done():
			return s.Err()
		case <-ctx.Done():
			return fmt.Errorf("flush: %w", ctx.Err())
		}
	}
	return s.Err()
}

// ackLoop reads what the destination sends on a stream: ACKs, and on
// stream 0 messages.
func (s *session) ackLoop(st *stream) {
	for {
		f, err := st.dec.Next()
		if err != nil {
			s.readFailed(st, err)
			return
		}
		switch {
		case f.Type == wire.TypeAck:
			if f.Seq < st.acked.Load() || f.Seq > st.sent.Load() {
				s.fail(fmt.Errorf("%w: stream %d: ACK %d, but %d were sent and %d acknowledged",
					transport.ErrProtocol, st.idx, f.Seq, st.sent.Load(), st.acked.Load()), wire.CodeProtocol)
				return
			}
			st.acked.Store(f.Seq)
			select {
			case s.ackNote <- struct{}{}:
			default:
			}
		case f.Type == wire.TypeMsg && st.idx == 0:
			if err := s.Msgs.Push(transport.Message{Kind: f.Kind, Payload: f.Payload}); err != nil {
				s.fail(err, wire.CodeProtocol)
				return
			}
		case f.Type == wire.TypeBye:
			s.peerBye(st, f)
			return
		case f.Type == wire.TypeAbort:
			s.peerAborted(st, f)
			return
		default:
			s.fail(fmt.Errorf("%w: stream %d: unexpected %v from the destination", transport.ErrProtocol, st.idx, f.Type), wire.CodeProtocol)
			return
		}
	}
}
