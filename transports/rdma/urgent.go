package rdma

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// The urgent path (transport API 3) has a channel and an endpoint of its
// own, so nothing urgent waits behind bulk pages or ordinary messages:
//
//	source                                        destination
//	urgent channel: 2nd TCP + transport.Secure ─► RecvUrgent (MSG both ways)
//	SendPagesUrgent ─ urgentLoop, in queue order:
//	  data ═ fi_write(RAM → RAM), urgent endpoint ═► guest RAM (registered
//	                                                  on that endpoint too)
//	  UCOMMIT useq, runs (fi_send after writes) ═══► data visible; zero runs
//	                                                  applied; Landed, in order
//	                                              ◄── ACK useq (urgent channel)
//
// The urgent endpoint is a second connection in the bulk endpoint's
// domain (fabric.ListenShared, ConnectShared), so guest RAM is registered
// once on each side and serves both (on verbs: pinned once; RLIMIT_MEMLOCK
// must cover guest RAM). At most uslots UCOMMITs are unacknowledged (the
// destination's receive buffers).
//
// Per-page order (transport.Transport's rules) cannot be kept the way
// tcp keeps it, with transport.Lane dropping a bulk copy that an urgent
// one overtook: an RDMA write lands without the destination's CPU, which
// learns of it only at the COMMIT, too late to drop it. The source keeps
// the order instead, by never having copies of a page in flight on both
// paths at once (order.go), under one lock, run by run:
//   - a bulk run whose pages have an urgent copy queued before it waits
//     until that copy was acknowledged (it is in RAM and reported to
//     Landed before the bulk write is posted); the batch built so far is
//     committed first, as that copy may be held for it (next rule);
//   - an urgent run of a page that the current bulk batch carries (queued,
//     not yet acknowledged) is held until that batch's ACK: its bulk copy
//     is then in RAM and reported, and the urgent copy lands after it.
//     Urgent runs queued after a held one wait behind it (urgent runs land
//     in queue order). SendPagesUrgent returns at once for such runs
//     (they are queued, not yet handed to the network), and they go out
//     when the source's next Flush of that batch is acknowledged;
//   - among urgent runs, a page written again before its previous urgent
//     copy was acknowledged waits for that ACK.
// So every page's writes land in queue order, each one: the final bytes
// are those of the copy queued last, a page's writes never go backwards,
// and Landed reports every write once it is complete, in that order.
// Nothing is dropped: a page queued in bulk and then urgently is written
// and reported twice, where tcp may drop the bulk copy.
//
// What this costs, and why it is enough: an urgent copy of a page with a
// bulk copy in flight waits for that bulk batch's Flush. The engine never
// queues such a page: in post-copy each owed page is queued exactly once,
// on one path, and the final pre-copy pass is flushed before the switch
// (docs/POSTCOPY.md); so for the engine the urgent path never waits
// behind bulk data. Bulk pages are reported by Landed at the MARK sent
// after the SendPages call that queued them (doc.go), without a Flush;
// where a provider lacks FI_ORDER_SAW there are no MARKs and they are
// reported at the Flush that commits them (tcp reports them as they
// arrive), so a post-copy background push should Flush each chunk it
// queues.

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
	return s.writeOn(ctx, s.uctrl, &s.uwlock, "urgent channel", hdr, m.Payload)
}

// RecvUrgent implements transport.Transport.
func (t *Transport) RecvUrgent(ctx context.Context) (transport.Message, error) {
	s, err := t.slot.Get()
	if err != nil {
		return transport.Message{}, err
	}
	return s.RecvUrgent(ctx)
}

// SendPagesUrgent implements transport.Transport: the runs are checked
// and queued in the per-page order; it returns once they were posted to
// the urgent endpoint, or at once when they wait for a bulk batch (see
// above). Data pages are read from guest RAM when posted.
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
	if err := s.Err(); err != nil {
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
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Answer implements transport.Answerer: the urgent channel's reader
// queues the owed pages of each request itself (answer).
func (t *Transport) Answer(_ context.Context, kind uint32, owed *transport.Owed) error {
	s, err := t.slot.Sender("Answer")
	if err != nil {
		return err
	}
	return s.Answering.Arm(kind, owed, s.ram.Pages)
}

// answer queues the owed pages of a request on the urgent endpoint, as
// SendPagesUrgent does, without waiting for them to be posted (the
// reader goes on reading; a failed post fails the session).
func (s *session) answer(req []byte) error {
	runs, err := s.Answering.Claim(req, s.ram.Page)
	if err != nil {
		return fmt.Errorf("urgent channel: %w", err)
	}
	if len(runs) == 0 {
		return nil
	}
	s.ord.queueUrgent(slices.Clone(runs))
	select {
	case s.usnd.kick <- struct{}{}:
	default:
	}
	return nil
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

// Landed implements transport.Transport.
func (t *Transport) Landed(ctx context.Context) ([]transport.PageRun, error) {
	s, err := t.slot.Get()
	if err != nil {
		return nil, err
	}
	return s.WaitLanded(ctx, Name+" transport")
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

// waitNote waits on note until reached holds (nil), the session ends
// (its error) or ctx is done (ctx.Err()); the notifier's producer
// stores what reached reads before it notifies. Once the session ended,
// reached is asked again and wins: an ACK (or MARKED) read before the
// end did come, and the end closes done without a notify, so a waiter
// woken by both would otherwise answer either way at random. It gives
// no caller more than that: Flush still fails a batch acknowledged
// just before the session ended (it looks at the session's error after
// the ACK, which is how a write that failed at the source only is
// caught; flush), and the other callers go on to post on the ended
// session, which fails there or at the next call, as when the session
// ends just after the wait. What they post on is still open: the
// endpoints and guest RAM are released by close only after the
// session's goroutines (urgentLoop) returned, and the engine's calls
// (SendPages, Flush) never run beside Close (transport.Transport's
// concurrency rules).
func (s *session) waitNote(ctx context.Context, note *notifier, reached func() bool) error {
	for {
		ch := note.wait()
		if reached() {
			return nil
		}
		select {
		case <-ch:
		case <-s.Done():
			if reached() {
				return nil
			}
			return s.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
