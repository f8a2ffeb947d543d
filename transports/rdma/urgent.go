package rdma

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// The urgent path (transport API 3) has a channel and an endpoint of its
// own, so nothing urgent waits behind bulk pages or ordinary messages:
//
//	source                                        destination
//	urgent channel: 2nd TCP + transport.Secure ─► RecvUrgent (MSG both ways)
//	SendPagesUrgent ─ urgentLoop:
//	  data ═ fi_write(RAM → RAM), urgent endpoint ═► guest RAM (registered
//	                                                  on that endpoint too)
//	  UCOMMIT useq, runs (fi_send after writes) ═══► data visible; zero runs
//	                                                  applied; Landed
//	                                              ◄── ACK useq (urgent channel)
//
// Per-page order (transport.Transport's rules) cannot be kept the way
// tcp keeps it: an RDMA write lands without the destination's CPU, so
// the destination cannot drop a bulk copy that an urgent one overtook.
// The source keeps it instead, by never having two copies of a page in
// flight on different paths (order, below):
//   - a bulk run waits until every urgent copy of its pages queued before
//     it was acknowledged by the destination (it is in RAM, and reported
//     to Landed, before the bulk write is posted);
//   - an urgent run of a page that the current bulk batch carries (queued
//     and not yet acknowledged) is held back until that batch's ACK: its
//     bulk copy is then in RAM and reported, and the urgent copy lands
//     after it. Urgent runs queued after a held one wait behind it (they
//     land in queue order). SendPagesUrgent returns at once for those,
//     and they go out after the next Flush of the bulk batch.
// So every page's writes land in queue order, each exactly once: the
// final bytes are those of the copy queued last, and Landed reports every
// write (the bulk batch's data runs at its COMMIT, its zero runs as they
// are applied, urgent runs at their UCOMMIT) after it is complete and in
// that order. Nothing is dropped, so a page queued in bulk and then
// urgently is reported twice where tcp may report it once.
//
// What this costs: an urgent copy of a page with a bulk copy in flight
// waits for that bulk batch (its Flush). The engine never queues such a
// page: in post-copy each owed page is queued exactly once, on one path,
// and the pages of the final pre-copy pass are flushed before the switch
// (docs/POSTCOPY.md); there the urgent path never waits behind bulk data.

// SendUrgent implements transport.Transport.
func (t *Transport) SendUrgent(ctx context.Context, m transport.Message) error {
	s, err := t.session()
	if err != nil {
		return err
	}
	if err := m.Check(); err != nil {
		return fmt.Errorf("send urgent: %w", err)
	}
	hdr, err := wire.AppendMsgHeader(nil, m.Kind, len(m.Payload))
	if err != nil {
		return fmt.Errorf("send urgent: %w", err)
	}
	return s.writeOn(ctx, s.uctrl, &s.uwlock, "urgent channel", hdr, m.Payload)
}

// RecvUrgent implements transport.Transport.
func (t *Transport) RecvUrgent(ctx context.Context) (transport.Message, error) {
	s, err := t.session()
	if err != nil {
		return transport.Message{}, err
	}
	return s.umsgs.Recv(ctx, s.done, s.error)
}

// SendPagesUrgent implements transport.Transport: the runs are checked
// and queued in the per-page order; it returns once they were posted to
// the urgent endpoint, or at once when they wait for a bulk batch (see
// above).
func (t *Transport) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	s, err := t.sender("SendPagesUrgent")
	if err != nil {
		return err
	}
	for _, r := range runs {
		if err := r.Check(s.ram.Pages); err != nil {
			return fmt.Errorf("send pages urgently: %w", err)
		}
	}
	if err := s.error(); err != nil {
		return err
	}
	if len(runs) == 0 {
		return nil
	}
	it, held := s.ord.queueUrgent(slices.Clone(runs))
	select {
	case s.usnd.kick <- struct{}{}:
	default:
	}
	if held {
		return nil
	}
	select {
	case <-it.posted:
		return it.err
	case <-s.done:
		return s.error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Landed implements transport.Transport.
func (t *Transport) Landed(ctx context.Context) ([]transport.PageRun, error) {
	s, err := t.session()
	if err != nil {
		return nil, err
	}
	if s.role != transport.RoleReceive {
		return nil, fmt.Errorf("rdma transport: Landed on the sending side: %w", transport.ErrNotSupported)
	}
	return s.landed.Wait(ctx)
}

// notifier wakes every goroutine waiting for an event (an ACK).
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
