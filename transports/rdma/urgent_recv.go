package rdma

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

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
	buf     []byte
	bufMR   *fabric.MR
	next    uint64 // the urgent COMMIT expected next (pollUrgentReceive only)
	applied atomic.Uint64
	ackNote chan struct{}
	runs    []transport.PageRun // scratch
}

// register registers guest RAM for remote writes on the urgent endpoint
// and posts its receive buffers; it runs before the connection is
// accepted.
func (u *ureceiver) register(s *session, e *fabric.Endpoint) error {
	c := e.Caps()
	for i, r := range s.ram.regions {
		key := randomKey()
		if c.KeySize > 0 && c.KeySize < 8 {
			key &= 1<<(8*c.KeySize) - 1
		}
		mr, err := e.Register(r.mem, fabric.AccessRemoteWrite, key)
		if err != nil {
			return fmt.Errorf("register guest RAM region %d (%d MiB) for urgent remote writes: %w%s", i, len(r.mem)>>20, err, memlockHint(c))
		}
		r.umr = mr
	}
	b, err := unix.Mmap(-1, 0, uslots*uslotSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	u.buf, u.next = b, 1
	u.ackNote = make(chan struct{}, 1)
	if u.bufMR, err = e.Register(b, fabric.AccessRecv, randomKey()); err != nil {
		return fmt.Errorf("register urgent receive buffers: %w", err)
	}
	for i := range uslots {
		if err := e.Recv(u.slot(i), u.bufMR, uint64(ctxUSlot0+i)); err != nil {
			return fmt.Errorf("post urgent receive: %w", err)
		}
	}
	return nil
}

func (u *ureceiver) slot(i int) []byte { return u.buf[i*uslotSize : (i+1)*uslotSize] }

func (u *ureceiver) release() {
	if u.buf != nil {
		unix.Munmap(u.buf)
		u.buf = nil
	}
}

// pollUrgentReceive takes urgent COMMITs from the urgent endpoint (and
// drives its progress): each one's runs are in guest RAM (data) or are
// applied now (zero), reported to Landed in order, and acknowledged.
func (s *session) pollUrgentReceive() {
	var cs [8]fabric.Completion
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, err := s.uep.Poll(cs[:], 10*time.Millisecond)
		if err != nil {
			s.fail(fmt.Errorf("fabric: the urgent connection failed (a write with a wrong key or outside guest RAM ends it): %w: %w",
				err, transport.ErrClosed), wire.CodeFailed)
			return
		}
		for _, c := range cs[:n] {
			if err := s.ucommitted(c); err != nil {
				s.fail(err, wire.CodeProtocol)
				return
			}
		}
	}
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
	if err := s.uep.Recv(u.slot(i), u.bufMR, c.Ctx); err != nil {
		return fmt.Errorf("post urgent receive: %w: %w", err, transport.ErrClosed)
	}
	for _, r := range runs {
		if r.Kind == transport.KindZero {
			s.ram.spans(r.First, r.Count, func(g *region, off, n uint64) error {
				g.zero(off, n, s.punch)
				return nil
			})
			s.stats.zero.Add(r.Count)
		} else {
			s.stats.data.Add(r.Count)
			s.stats.wire.Add(r.Count * pageSize)
		}
		s.landed.Push(r)
	}
	s.stats.wire.Add(c.Len)
	u.next++
	u.applied.Store(useq)
	select {
	case u.ackNote <- struct{}{}:
	default:
	}
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
		case <-s.done:
			return
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
