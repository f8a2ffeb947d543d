package tcp

import (
	"context"
	"fmt"
	"net"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// The urgent path (transport API 3) runs on the session's urgent stream:
// one more connection to the same address, with the same credentials and
// handshake (Secure, then HELLO with wire.FlagUrgent) and TCP_NODELAY like
// every stream. Nothing bulk ever travels on it, and nobody queues for it:
// SendUrgent and SendPagesUrgent write their frames themselves, so an
// urgent frame waits at most for the urgent frame being written before it.
//
//	source                                   destination
//	SendPagesUrgent ─ PAGES/ZERO (seq: the ─► urgentLoop: stage, then under the
//	  bulk batch it overtakes on its lane)     page's Lane write, record for Landed
//	SendUrgent ─────── MSG ─────────────────► umsgs → RecvUrgent
//	RecvUrgent ◄─ umsgs ◄─ urgentLoop ◄──MSG── SendUrgent
//
// As a transport.Pusher (in its plugin process) the same loops hand each
// message, and each landed run at LandedQueue.Deliver, to the urgent
// channel themselves instead of queueing it for RecvUrgent and Landed.
//
// Urgent pages are split on the bulk grid (batchPages), so each frame's
// pages belong to one bulk stream, whose last queued batch number the
// frame carries as its seq (transport.Lane explains the rule).

// SendUrgent implements transport.Transport.
func (t *Transport) SendUrgent(ctx context.Context, m transport.Message) error {
	s, err := t.slot.Get()
	if err != nil {
		return err
	}
	hdr, err := sessionbase.MsgHeader("send urgent", m)
	if err != nil {
		return err
	}
	return s.writeUrgent(ctx, net.Buffers{s.inVersion(hdr), m.Payload})
}

// RecvUrgent implements transport.Transport.
func (t *Transport) RecvUrgent(ctx context.Context) (transport.Message, error) {
	s, err := t.slot.Get()
	if err != nil {
		return transport.Message{}, err
	}
	return s.RecvUrgent(ctx)
}

// SendPagesUrgent implements transport.Transport: the runs are checked,
// split on the bulk grid and written to the urgent stream before it
// returns, data pages read from guest RAM as they are written.
func (t *Transport) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	s, err := t.slot.Sender("SendPagesUrgent")
	if err != nil {
		return err
	}
	for _, r := range runs {
		if err := r.Check(s.ram.Pages); err != nil {
			return fmt.Errorf("send pages urgently: %w", err)
		}
	}
	return s.sendUrgentRuns(ctx, runs)
}

// sendUrgentRuns writes checked runs to the urgent stream.
func (s *session) sendUrgentRuns(ctx context.Context, runs []transport.PageRun) error {
	var hdr [wire.HeaderSize + wire.RunSize]byte
	for _, r := range runs {
		for p, end := r.First, r.First+r.Count; p < end; {
			reg := s.ram.find(p)
			cell := p / batchPages
			n := min(end, reg.first+reg.pages, (cell+1)*batchPages) - p
			after := s.streams[cell%uint64(len(s.streams))].queued.Load()
			run := wire.Run{First: p, Count: uint32(n)}
			var b net.Buffers
			if r.Kind == transport.KindZero {
				h, err := wire.AppendZero(hdr[:0], after, run)
				if err != nil {
					return err
				}
				b = net.Buffers{h}
				s.stats.zero.Add(n)
			} else {
				off := (p - reg.first) * pageSize
				data := reg.mem[off : off+n*pageSize]
				h, err := wire.AppendPagesHeader(hdr[:0], after, run, false, len(data))
				if err != nil {
					return err
				}
				b = net.Buffers{h, data}
				s.stats.data.Add(n)
			}
			if err := s.writeUrgent(ctx, b); err != nil {
				return err
			}
			p += n
		}
	}
	return nil
}

// Landed implements transport.Transport.
func (t *Transport) Landed(ctx context.Context) ([]transport.PageRun, error) {
	s, err := t.slot.Get()
	if err != nil {
		return nil, err
	}
	return s.WaitLanded(ctx, Name+" transport")
}

// Answer implements transport.Answerer: the urgent stream's reader
// answers the requests itself (answer).
func (t *Transport) Answer(_ context.Context, kind uint32, owed *transport.Owed) error {
	s, err := t.slot.Sender("Answer")
	if err != nil {
		return err
	}
	return s.Answering.Arm(kind, owed, s.ram.Pages)
}

// answer sends the owed pages of a request on the urgent stream, from
// the reader's goroutine: the page leaves without another thread waking.
func (s *session) answer(req []byte) error {
	runs, err := s.Answering.Claim(req, s.ram.Page)
	if err != nil {
		return fmt.Errorf("urgent stream: %w", err)
	}
	if len(runs) == 0 {
		return nil
	}
	return s.sendUrgentRuns(context.Background(), runs)
}

// PushUrgent implements transport.Pusher.
func (t *Transport) PushUrgent(urgent func(transport.Message) error, ended func(error)) error {
	s, err := t.slot.Get()
	if err != nil {
		return err
	}
	if err := s.Umsgs.Attach(urgent, ended); err != nil {
		s.fail(err, sessionbase.AbortCode(err))
		return err
	}
	return nil
}

// PushLanded implements transport.Pusher.
func (t *Transport) PushLanded(landed func([]transport.PageRun), ended func(error)) error {
	s, err := t.slot.Get()
	if err != nil {
		return err
	}
	return s.PushLanded(Name+" transport", landed, ended)
}

// writeUrgent writes one frame on the urgent stream (writeFrame, as
// for messages: a write ctx cuts short inside the frame, or over TLS at
// all, fails the session).
func (s *session) writeUrgent(ctx context.Context, b net.Buffers) error {
	if err := s.Err(); err != nil {
		return err
	}
	if s.urgent == nil {
		return fmt.Errorf("tcp transport: the session has no urgent stream: %w", transport.ErrNotSupported)
	}
	return s.writeFrame(ctx, s.urgent, "send urgent", b)
}

// urgentLoop reads the urgent stream: messages on both sides, and on the
// destination urgent pages.
func (s *session) urgentLoop(st *stream) {
	for {
		f, err := st.dec.Next()
		if err != nil {
			s.readFailed(st, err)
			return
		}
		if s.Role == transport.RoleReceive {
			s.stats.wire.Add(wire.HeaderSize + uint64(f.Length))
		}
		switch {
		case f.Type == wire.TypeMsg && s.Answering.Answers(f.Kind):
			err = s.answer(f.Payload)
		case f.Type == wire.TypeMsg:
			err = s.Umsgs.Push(transport.Message{Kind: f.Kind, Payload: f.Payload})
		case (f.Type == wire.TypePages || f.Type == wire.TypeZero) && s.Role == transport.RoleReceive:
			err = s.writeUrgentPages(st, f)
		case f.Type == wire.TypeBye:
			s.peerBye(st, f)
			return
		case f.Type == wire.TypeAbort:
			s.peerAborted(st, f)
			return
		default:
			err = fmt.Errorf("%w: urgent stream: unexpected %v from the %v", transport.ErrProtocol, f.Type, peerRole(s.Role))
		}
		if err != nil {
			s.fail(err, sessionbase.AbortCode(err))
			return
		}
	}
}

func peerRole(r transport.Role) string {
	if r == transport.RoleSend {
		return "destination"
	}
	return "source"
}

// writeUrgentPages puts one urgent PAGES or ZERO frame into guest RAM:
// data is staged first, then written under its lane, whose rule then
// drops older bulk copies of the same pages.
func (s *session) writeUrgentPages(st *stream, f wire.Frame) error {
	first, count := f.Run.First, uint64(f.Run.Count)
	reg, err := s.ram.span(first, count)
	if err != nil {
		return fmt.Errorf("urgent stream: %w", err)
	}
	if first/batchPages != (first+count-1)/batchPages {
		return fmt.Errorf("%w: urgent stream: pages %d+%d cross the bulk grid", transport.ErrProtocol, first, count)
	}
	kind := transport.KindZero
	var buf []byte
	if f.Type == wire.TypePages {
		kind = transport.KindData
		buf = st.stage(int(count) * pageSize)
		if err := st.dec.ReadPages(buf); err != nil {
			return connErr(st, err)
		}
	}
	lane := &s.lanes[(first/batchPages)%uint64(len(s.streams))]
	lane.Lock()
	lane.Urgent(first, count, f.Seq)
	if kind == transport.KindZero {
		reg.zero(f.Run, first, first+count)
	} else {
		reg.write(buf, first)
	}
	s.Landed.Push(transport.PageRun{First: first, Count: count, Kind: kind})
	lane.Unlock()
	s.Landed.Deliver()
	if kind == transport.KindZero {
		s.stats.zero.Add(count)
	} else {
		s.countData(f)
	}
	return nil
}
