package tcp

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// ackEvery bounds the batches a destination stream writes before it
// acknowledges, even while more input is already buffered.
const ackEvery = 16

// deliverEvery bounds the pages a destination stream writes before it
// reports them to a pusher (LandedQueue.Deliver), even while more input
// is already buffered: a page the guest waits for is reported soon, and a
// burst of small batches is not reported one by one.
const deliverEvery = 256

// readLoop is a destination stream: it writes PAGES and ZERO batches
// into guest RAM, in order, after checking that each lies inside one RAM
// region, and acknowledges them; on stream 0 it also takes messages. Any
// error fails the session: nothing outside guest RAM is ever written.
func (s *session) readLoop(st *stream) {
	var unacked, last, undelivered uint64
	for {
		f, err := st.dec.Next()
		if err != nil {
			s.readFailed(st, err)
			return
		}
		s.stats.wire.Add(wire.HeaderSize + uint64(f.Length))
		switch {
		case f.Type == wire.TypePages || f.Type == wire.TypeZero:
			err = s.writePages(st, f)
			last, unacked = f.Seq, unacked+1
			if undelivered += uint64(f.Run.Count); err == nil && (st.dec.Buffered() == 0 || undelivered >= deliverEvery) {
				s.Landed.Deliver()
				undelivered = 0
			}
		case f.Type == wire.TypeMsg && st.idx == 0:
			err = s.Msgs.Push(transport.Message{Kind: f.Kind, Payload: f.Payload})
		case f.Type == wire.TypeBye:
			s.peerBye(st, f)
			return
		case f.Type == wire.TypeAbort:
			s.peerAborted(st, f)
			return
		default:
			err = fmt.Errorf("%w: stream %d: unexpected %v from the source", transport.ErrProtocol, st.idx, f.Type)
		}
		if err != nil {
			s.fail(err, sessionbase.AbortCode(err))
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
// transport.Lane), and every write is reported to Landed. Data is read
// (and decompressed) into the stream's staging buffer first, then
// written into the RAM file (region.write): the buffer stays hot, the
// file's fresh pages are filled by the kernel without a page fault each,
// and the lane is never held while the network is read, so an urgent
// write waits for a pwrite at most.
func (s *session) writePages(st *stream, f wire.Frame) error {
	if f.Seq != st.next {
		return fmt.Errorf("%w: stream %d: batch %d where %d was due", transport.ErrProtocol, st.idx, f.Seq, st.next)
	}
	run := f.Run
	first, count := run.First, uint64(run.Count)
	reg, err := s.ram.span(first, count)
	if err != nil {
		return fmt.Errorf("stream %d: batch %d: %w", st.idx, f.Seq, err)
	}
	// A strided ZERO run (the decoder took only this session's stride)
	// covers this stream's cells of its range; any other run lies in one.
	if s.stream(first) != st || !run.Strided() && first/batchPages != (first+count-1)/batchPages {
		return fmt.Errorf("%w: stream %d: batch %d (pages %d+%d) belongs to another stream", transport.ErrProtocol, st.idx, f.Seq, first, count)
	}
	st.next++
	lane := &s.lanes[st.idx]
	if f.Type == wire.TypeZero {
		lane.Lock()
		err := lane.Bulk(f.Seq, first, count, func(a, n uint64) error {
			reg.zero(run, a, a+n)
			run.Stretches(a, a+n, func(lo, hi uint64) {
				s.Landed.Push(transport.PageRun{First: lo, Count: hi - lo, Kind: transport.KindZero})
			})
			return nil
		})
		lane.Unlock()
		s.stats.zero.Add(run.Pages())
		return err
	}
	buf := st.stage(int(count) * pageSize)
	if err := st.dec.ReadPages(buf); err != nil {
		return connErr(st, err)
	}
	lane.Lock()
	err = lane.Bulk(f.Seq, first, count, func(a, n uint64) error {
		reg.write(buf[(a-first)*pageSize:(a-first+n)*pageSize], a)
		s.Landed.Push(transport.PageRun{First: a, Count: n, Kind: transport.KindData})
		return nil
	})
	lane.Unlock()
	s.countData(f)
	return err
}

// stage returns the stream's staging buffer, n bytes long.
func (st *stream) stage(n int) []byte {
	if cap(st.staging) < n {
		st.staging = make([]byte, n)
	}
	return st.staging[:n]
}

func (s *session) countData(f wire.Frame) {
	s.stats.data.Add(uint64(f.Run.Count))
	if f.Flags&wire.FlagCompressed != 0 {
		s.stats.compressed.Add(uint64(f.Run.Count))
	}
}

// ack tells the source that every batch up to seq is in guest RAM.
func (s *session) ack(st *stream, seq uint64) error {
	if err := st.lock(noCancel, s.Done()); err != nil {
		return err
	}
	var b [wire.HeaderSize]byte
	n, err := st.conn.Write(s.inVersion(wire.AppendAck(b[:0], seq)))
	if err != nil {
		st.failedAfter(int64(n))
	}
	st.unlock()
	if err != nil {
		return st.writeFailed(fmt.Sprintf("ACK %d", seq), err, false, nil, int64(n), wire.HeaderSize)
	}
	return nil
}
