package rdma

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// ctxUSlot0 is the completion context of the destination's first urgent
// receive buffer.
const ctxUSlot0 = 200

// ureceiver is the destination's urgent path: receive buffers for urgent
// COMMITs and the last one applied.
type ureceiver struct {
	buffers
	next    uint64 // the urgent COMMIT expected next (pollUrgentReceive only)
	applied atomic.Uint64
	ackNote chan struct{}
	runs    []transport.PageRun           // scratch
	hold    atomic.Pointer[chan struct{}] // tests: ACKs wait until it is closed
	repost  atomic.Pointer[error]         // tests: re-posting a receive buffer fails with it
}

// register posts the urgent endpoint's receive buffers; it runs before
// the connection is accepted. Guest RAM needs no registration of its own:
// the endpoint is in the bulk endpoint's domain (receiver.register
// registered it there once).
func (u *ureceiver) register(s *session, e *fabric.Endpoint) error {
	u.next = 1
	u.ackNote = make(chan struct{}, 1)
	if err := u.open(e, uslots*uslotSize, fabric.AccessRecv, "urgent receive buffers"); err != nil {
		return err
	}
	return u.postRecvs(e, uslots, uslotSize, ctxUSlot0, "urgent receive")
}

func (u *ureceiver) slot(i int) []byte { return u.buf[i*uslotSize : (i+1)*uslotSize] }

// repostRecv posts urgent receive buffer i again, with completion
// context ctx, once its COMMIT was taken.
func (u *ureceiver) repostRecv(e *fabric.Endpoint, i int, ctx uint64) error {
	if err := u.repost.Load(); err != nil {
		return *err
	}
	return e.Recv(u.slot(i), u.bufMR, ctx)
}

// pollUrgentReceive takes urgent COMMITs from the urgent endpoint (and
// drives its progress): each one's runs are in guest RAM (data) or are
// applied now (zero), reported to Landed in order, and acknowledged.
func (s *session) pollUrgentReceive() {
	var cs [8]fabric.Completion
	s.poll(polled("the urgent connection failed (a write with a wrong key or outside guest RAM ends it): ", s.uep, func(cs []fabric.Completion) error {
		for _, c := range cs {
			if err := s.ucommitted(c); err != nil {
				return err
			}
		}
		return nil
	}), cs[:])
}

func (s *session) ucommitted(c fabric.Completion) error {
	u := &s.urcv
	i := int(c.Ctx) - ctxUSlot0
	if i < 0 || i >= uslots || c.Len > uslotSize {
		return fmt.Errorf("%w: unexpected completion %+v on the urgent endpoint", transport.ErrProtocol, c)
	}
	useq, runs, err := parseUCommit(u.slot(i)[:c.Len], s.ram.Pages, u.runs[:0])
	u.runs = runs[:0]
	if err != nil {
		return err
	}
	if useq != u.next {
		return fmt.Errorf("%w: urgent COMMIT %d, expected %d", transport.ErrProtocol, useq, u.next)
	}
	// The source never lists a page twice in one urgent COMMIT
	// (postUrgent commits before a page repeats): this bounds what one
	// may count, as takeRuns bounds a bulk batch.
	var pages uint64
	for _, r := range runs {
		pages += r.Count // each within guest RAM: no overflow
	}
	if pages > s.ram.Pages {
		return fmt.Errorf("%w: urgent COMMIT %d names %d pages, guest RAM has %d", transport.ErrProtocol, useq, pages, s.ram.Pages)
	}
	if err := u.repostRecv(s.uep, i, c.Ctx); err != nil {
		return fmt.Errorf("post urgent receive: %w: %w", err, transport.ErrClosed)
	}
	for _, r := range runs {
		if r.Kind == transport.KindZero {
			s.applyZero(r)
		} else {
			s.stats.data.Add(r.Count)
			s.stats.wire.Add(r.Count * pageSize)
		}
		s.Landed.Push(r)
	}
	s.Landed.Deliver()
	s.stats.wire.Add(c.Len)
	u.next++
	u.applied.Store(useq)
	wake(u.ackNote)
	return nil
}

// uackLoop acknowledges applied urgent COMMITs on the urgent channel,
// out of the poller's way (one ACK covers every COMMIT up to it).
func (s *session) uackLoop() {
	u := &s.urcv
	var sent uint64
	for {
		select {
		case <-u.ackNote:
		case <-s.Done():
			return
		}
		if h := u.hold.Load(); h != nil {
			select {
			case <-*h:
			case <-s.Done():
				return
			}
		}
		if a := u.applied.Load(); a > sent {
			if err := s.writeOn(context.Background(), s.uctrl, &s.uwlock, "urgent channel", wire.AppendAck(nil, a)); err != nil {
				return
			}
			sent = a
		}
	}
}

// ureceiveCtrl takes the source's own frames on the urgent channel: none.
func (s *session) ureceiveCtrl(f wire.Frame) error {
	return fmt.Errorf("%w: the source sent %v on the urgent channel", transport.ErrProtocol, f.Type)
}
