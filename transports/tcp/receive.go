package tcp

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// ackEvery bounds the batches a destination stream writes before it
// acknowledges, even while more input is already buffered.
const ackEvery = 16

// readLoop is a destination stream: it writes PAGES and ZERO batches
// into guest RAM, in order, after checking that each lies inside one RAM
// region, and acknowledges them; on stream 0 it also takes messages. Any
// error fails the session: nothing outside guest RAM is ever written.
func (s *session) readLoop(st *stream) {
	var unacked, last uint64
	for {
		f, err := st.dec.Next()
		if err != nil {
			s.fail(connErr(st, err), protocolCode(err))
			return
		}
		s.stats.wire.Add(wire.HeaderSize + uint64(f.Length))
		switch {
		case f.Type == wire.TypePages || f.Type == wire.TypeZero:
			err = s.writePages(st, f)
			last, unacked = f.Seq, unacked+1
		case f.Type == wire.TypeMsg && st.idx == 0:
			err = s.msgs.Push(transport.Message{Kind: f.Kind, Payload: f.Payload})
		case f.Type == wire.TypeBye:
			s.peerBye(st, f)
			return
		case f.Type == wire.TypeAbort:
			s.fail(peerEnded(st, f), 0)
			return
		default:
			err = fmt.Errorf("%w: stream %d: unexpected %v from the source", transport.ErrProtocol, st.idx, f.Type)
		}
		if err != nil {
			s.fail(err, protocolCode(err))
			return
		}
		// Acknowledge once the input runs dry (the source may be waiting
		// in Flush) and at least every ackEvery batches.
		if unacked > 0 && (st.dec.Buffered() == 0 || unacked >= ackEvery) {
			if err := s.ack(st, last); err != nil {
				if err != errSessionDone {
					s.fail(err, wire.CodeFailed)
				}
				return
			}
			unacked = 0
		}
	}
}

// writePages puts one PAGES or ZERO frame into guest RAM, under the
// stream's Lane: pages an urgent copy overtook are dropped (see
// transport.Lane), and every write is reported to Landed. Until urgent
// pages arrived, data is read from the socket straight into guest RAM;
// from then on it is staged first, so that the lane is never held while
// the network is read and an urgent write waits for a copy at most.
func (s *session) writePages(st *stream, f wire.Frame) error {
	if f.Seq != st.next {
		return fmt.Errorf("%w: stream %d: batch %d where %d was due", transport.ErrProtocol, st.idx, f.Seq, st.next)
	}
	first, count := f.Run.First, uint64(f.Run.Count)
	reg, mem, err := s.ram.span(first, count)
	if err != nil {
		return fmt.Errorf("stream %d: batch %d: %w", st.idx, f.Seq, err)
	}
	if (first/batchPages)%uint64(len(s.streams)) != uint64(st.idx) || first/batchPages != (first+count-1)/batchPages {
		return fmt.Errorf("%w: stream %d: batch %d (pages %d+%d) belongs to another stream", transport.ErrProtocol, st.idx, f.Seq, first, count)
	}
	st.next++
	lane := &s.lanes[st.idx]
	land := func(kind transport.Kind) func(a, n uint64) error {
		return func(a, n uint64) error {
			s.landed.Push(transport.PageRun{First: a, Count: n, Kind: kind})
			return nil
		}
	}
	if f.Type == wire.TypeZero {
		lane.Lock()
		err := lane.Bulk(f.Seq, first, count, func(a, n uint64) error {
			reg.zero(mem[(a-first)*pageSize:(a-first+n)*pageSize], a)
			return land(transport.KindZero)(a, n)
		})
		lane.Unlock()
		s.stats.zero.Add(count)
		return err
	}
	if !s.urgentSeen.Load() {
		lane.Lock()
		if !s.urgentSeen.Load() { // no urgent page can have overtaken this batch
			err := st.dec.ReadPages(mem)
			if err == nil {
				err = lane.Bulk(f.Seq, first, count, land(transport.KindData))
			}
			lane.Unlock()
			if err != nil {
				return connErr(st, err)
			}
			s.countData(f)
			return nil
		}
		lane.Unlock()
	}
	n := int(count) * pageSize
	if cap(st.staging) < n {
		st.staging = make([]byte, n)
	}
	buf := st.staging[:n]
	if err := st.dec.ReadPages(buf); err != nil {
		return connErr(st, err)
	}
	lane.Lock()
	err = lane.Bulk(f.Seq, first, count, func(a, n uint64) error {
		copy(mem[(a-first)*pageSize:(a-first+n)*pageSize], buf[(a-first)*pageSize:])
		return land(transport.KindData)(a, n)
	})
	lane.Unlock()
	s.countData(f)
	return err
}

func (s *session) countData(f wire.Frame) {
	s.stats.data.Add(uint64(f.Run.Count))
	if f.Flags&wire.FlagCompressed != 0 {
		s.stats.compressed.Add(uint64(f.Run.Count))
	}
}

// ack tells the source that every batch up to seq is in guest RAM.
func (s *session) ack(st *stream, seq uint64) error {
	if err := st.lock(noCancel, s.done); err != nil {
		return err
	}
	var b [wire.HeaderSize]byte
	n, err := st.conn.Write(wire.AppendAck(b[:0], seq))
	st.unlock()
	if err != nil {
		st.broken.Store(n > 0)
		return connErr(st, err)
	}
	return nil
}
