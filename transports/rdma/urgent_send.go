package rdma

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// uslots bounds the urgent COMMITs in flight: the destination posts that
// many receive buffers on the urgent endpoint, the source waits for an
// ACK before it exceeds them.
const uslots = 16

// Completion contexts on the source's urgent endpoint: its writes' are
// writeCtx's, as on the bulk endpoint.
const (
	ctxUCommit0 = 10 // + buffer index
)

// usender is the source's urgent path: the urgent endpoint's queue and
// the COMMITs it posted.
type usender struct {
	buffers                     // uslots COMMIT buffers of uslotSize
	busy    [uslots]atomic.Bool // the buffer's send has not completed
	queue
	kick    chan struct{}
	posted  atomic.Uint64 // last COMMIT posted
	acked   atomic.Uint64 // last COMMIT the destination acknowledged
	ackNote notifier
	// urgentLoop only: pages of COMMITs not yet acknowledged.
	recent []urec
	// tests only: the runs a COMMIT lists, given the item's (a buggy or
	// hostile source's).
	commitRuns func([]transport.PageRun) []transport.PageRun
}

type urec struct{ first, count, commit uint64 }

func (u *usender) register(s *session) error {
	// Guest RAM was registered once, in the domain both endpoints share
	// (sender.register): r.mr serves the urgent writes too.
	if err := u.open(s.uep, uslots*uslotSize, fabric.AccessSend, "the urgent send buffers"); err != nil {
		return err
	}
	u.queue.init("urgent endpoint: ", s.uep, s.usendCompleted)
	u.kick = make(chan struct{}, 1)
	s.ord.init(s.ram.Pages, u.acked.Load)
	return nil
}

// pollUrgentSend drives the urgent endpoint's progress on the source and
// counts its completions; a failed operation fails the session.
func (s *session) pollUrgentSend() {
	var cs [32]fabric.Completion
	s.poll(&s.usnd.queue, cs[:])
}

// usendCompleted counts the urgent endpoint's completions cs (their
// written pages first, as sendCompleted does).
func (s *session) usendCompleted(cs []fabric.Completion) error {
	u := &s.usnd
	s.writesCompleted(cs)
	for _, c := range cs {
		u.inflight.Add(-1)
		if i := int(c.Ctx) - ctxUCommit0; i >= 0 && i < uslots {
			u.busy[i].Store(false)
		}
	}
	wake(u.progress)
	return nil
}

// usendCtrl takes the destination's frames on the urgent channel: ACK.
//
// An ACK is not timed for Stats.RTT (rtt.go), though posting an urgent
// COMMIT to reading its ACK would be as sound a sample as a MARK's: at
// least a round trip, with no bulk queue ahead of it on this side (the
// urgent endpoint has its own, holding only the item's own writes and
// at most uslots COMMITs), and whatever else is in it (the
// destination's zero runs applied, its hand-over of the runs to Landed,
// an ACK written behind its urgent messages or covering several
// COMMITs) only makes it longer. It is left out because no estimate
// would take it: urgent COMMITs go only in post-copy (the engine's
// SendPagesUrgent and Answer), once the engine has read Stats.RTT for
// the last time (once a pre-copy pass, engine rttMeter); and Stats.RTT
// is the last bulk batch's smallest, in which a sample of another path
// would need a rule of its own (which batch it counts toward), taken on
// this reader, not the control channel's, whose alone roundTrips.cur is.
// Should the engine ever charge a round trip during post-copy, this is
// where its sample would start (postUCommit posts, this ACK ends it).
func (s *session) usendCtrl(f wire.Frame) error {
	u := &s.usnd
	if p := u.posted.Load(); f.Type != wire.TypeAck || f.Seq > p {
		return fmt.Errorf("%w: the destination sent %v %d on the urgent channel (urgent COMMIT %d was the last posted)", transport.ErrProtocol, f.Type, f.Seq, p)
	}
	if f.Seq > u.acked.Load() {
		u.acked.Store(f.Seq)
	}
	u.ackNote.notify()
	return nil
}

// urgentLoop posts the urgent items in queue order, each once the bulk
// batch it waits for (if any) was acknowledged.
func (s *session) urgentLoop() {
	for {
		it := s.ord.head()
		if it == nil {
			select {
			case <-s.usnd.kick:
				continue
			case <-s.Done():
				return
			}
		}
		if err := s.waitNote(context.Background(), &s.snd.ackNote, func() bool { return s.snd.acked.Load() >= it.gate }); err != nil {
			s.ord.posted(it, 0, err)
			return
		}
		err := s.postUrgent(it)
		s.ord.posted(it, s.usnd.posted.Load(), err)
		if err != nil {
			// Nobody may wait for the item (an answered request): the
			// session ends, and the engine's reconnect resends its pages.
			s.fail(fmt.Errorf("post urgent pages: %w", err), wire.CodeFailed)
			return
		}
	}
}

// postUrgent writes an item's data runs on the urgent endpoint, then its
// runs in one or more COMMITs. A page written again before its previous
// urgent copy was acknowledged waits for that ACK first (two writes of a
// page are not ordered across COMMITs, nor against a zero run the
// destination applies).
func (s *session) postUrgent(it *uitem) error {
	u := &s.usnd
	var list []transport.PageRun
	commit := func() error {
		if len(list) == 0 {
			return nil
		}
		err := s.postUCommit(list)
		list = list[:0]
		for _, w := range u.deferred { // tests only (commitEarly)
			if err == nil {
				err = s.upost(w)
			}
		}
		u.deferred = nil
		return err
	}
	for _, r := range it.runs {
		for first, left := r.First, r.Count; left > 0; {
			n := min(left, 1<<31)
			piece := transport.PageRun{First: first, Count: n, Kind: r.Kind}
			first, left = first+n, left-n
			if c := u.conflict(piece); c != 0 {
				if c > u.posted.Load() {
					if err := commit(); err != nil {
						return err
					}
				}
				if err := s.waitUAck(c); err != nil {
					return err
				}
			}
			if len(list) == maxURuns {
				if err := commit(); err != nil {
					return err
				}
			}
			if piece.Kind == transport.KindData {
				if err := s.uwrite(piece); err != nil {
					return err
				}
			}
			list = append(list, piece)
			u.recent = append(u.recent, urec{piece.First, piece.Count, u.posted.Load() + 1})
		}
	}
	return commit()
}

// conflict returns the latest COMMIT not yet acknowledged (the pending
// one included) that carries a page of r, or 0.
func (u *usender) conflict(r transport.PageRun) uint64 {
	acked := u.acked.Load()
	var c uint64
	n := 0
	for _, e := range u.recent {
		if e.commit <= acked {
			continue
		}
		u.recent[n] = e
		n++
		if e.first < r.First+r.Count && r.First < e.first+e.count {
			c = max(c, e.commit)
		}
	}
	u.recent = u.recent[:n]
	return c
}

// uwrite posts the writes of data run r on the urgent endpoint, straight
// from guest RAM into the destination's.
func (s *session) uwrite(r transport.PageRun) error {
	err := s.postWrites(context.Background(), &s.usnd.queue, r, nil, func(g *region, chunk []byte, at uint64) func() error {
		return func() error { return s.uep.Write(chunk, g.mr, g.urbase+at, g.urkey, writeCtx(chunk)) }
	})
	if err != nil {
		return fmt.Errorf("write pages urgently: %w", err)
	}
	return nil
}

// postUCommit sends the COMMIT of list after the writes posted before it.
func (s *session) postUCommit(list []transport.PageRun) error {
	u := &s.usnd
	useq := u.posted.Load() + 1
	for useq-u.acked.Load() > uslots {
		if err := s.waitUAck(useq - uslots); err != nil {
			return err
		}
	}
	i := int(useq % uslots)
	for u.busy[i].Load() || (s.ucaps.DeliveryComplete && u.inflight.Load() > 0) {
		// Without send-after-write ordering the COMMIT goes only once
		// every write is visible at the target (FI_DELIVERY_COMPLETE).
		if err := s.waitUProgress(); err != nil {
			return err
		}
	}
	b := u.buf[i*uslotSize : (i+1)*uslotSize]
	if u.commitRuns != nil {
		list = u.commitRuns(list)
	}
	n := putUCommit(b, useq, list)
	for _, r := range list {
		if r.Kind == transport.KindZero {
			s.stats.zero.Add(r.Count)
		}
	}
	u.busy[i].Store(true)
	u.posted.Store(useq)
	if err := s.upost(func() error { return s.uep.Send(b[:n], u.bufMR, uint64(ctxUCommit0+i)) }); err != nil {
		return fmt.Errorf("urgent commit %d: %w", useq, err)
	}
	s.stats.wire.Add(uint64(n))
	return nil
}

// upost posts one operation on the urgent endpoint, waiting for room.
func (s *session) upost(op func() error) error {
	return s.postOn(context.Background(), &s.usnd.queue, op)
}

func (s *session) waitUProgress() error { return s.waitOn(context.Background(), &s.usnd.queue) }

// waitUAck waits until urgent COMMIT c was acknowledged (bounded by
// the session: urgent posts run under no engine context).
func (s *session) waitUAck(c uint64) error {
	return s.waitNote(context.Background(), &s.usnd.ackNote, func() bool { return s.usnd.acked.Load() >= c })
}

// waitUrgentDone waits until urgent item it is in guest RAM (for a bulk
// run queued after it), the session's end or ctx's. Until 2026-12-07 it
// waited for the item's ACK under no context once the item was posted,
// so a SendPages whose ACK the destination held waited past its context
// (TestClaimWaitHonoursContext).
func (s *session) waitUrgentDone(ctx context.Context, it *uitem) error {
	defer s.snd.away()()
	select {
	case <-it.posted:
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	if it.err != nil {
		return it.err
	}
	return s.waitNote(ctx, &s.usnd.ackNote, func() bool { return s.usnd.acked.Load() >= it.commit })
}
