package tcp

import (
	"fmt"
	"net"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// Batching: a batch is at most batchPages pages and never crosses a
// multiple of batchPages (the grid that keeps each page on one stream).
const (
	batchPages = 256
	queueDepth = 32 // batches waiting per stream
	// zeroGather bounds the ZERO frames (36 bytes each) that go out in
	// one write when they wait back to back (writeZeros): 16 KiB, one TLS
	// record.
	zeroGather = 16 << 10
)

// batch is one frame to send: pages [first, first+count) of kind.
type batch struct {
	seq     uint64
	kind    transport.Kind
	first   uint64
	count   uint32
	strided bool    // KindZero: only the stream's own cells of the range (enqueueZeros)
	reg     *region // KindData: the region holding the pages
}

// run is the batch's run as a frame carries it.
func (s *session) run(b batch) wire.Run {
	r := wire.Run{First: b.first, Count: b.count}
	if b.strided {
		r.Cell, r.Every = batchPages, uint16(len(s.streams))
	}
	return r
}

// writer is a send stream's scratch space, reused for every frame.
type writer struct {
	prefix [wire.HeaderSize + wire.RunSize]byte
	vec    [2][]byte
	bufs   net.Buffers
	comp   *compressor
	data   []byte // a batch's pages, read from the RAM file
	zeros  []byte // ZERO frames gathered for one write
}

// writeLoop sends the stream's batches until the session ends.
func (s *session) writeLoop(st *stream) {
	var next *batch // taken from the queue behind gathered zeros
	for {
		var b batch
		if next != nil {
			b, next = *next, nil
		} else {
			select {
			case b = <-st.queue:
			case <-s.Done():
				return
			}
		}
		var err error
		if b.kind == transport.KindZero {
			next, err = s.writeZeros(st, b)
		} else {
			err = s.writeBatch(st, b)
		}
		if err != nil {
			if err != errSessionDone {
				s.fail(err, wire.CodeFailed)
			}
			return
		}
	}
}

// writeZeros writes ZERO batch b and every ZERO batch queued right behind
// it (up to zeroGather bytes of frames) in one write, and returns the
// batch of another kind it took from the queue, if any, to go next. Long
// zero runs are one strided frame per stream already (enqueueZeros); many
// short ones (zero pages scattered between data, each its own run) would
// otherwise cost a write and a TLS record per 36-byte frame.
func (s *session) writeZeros(st *stream, b batch) (next *batch, err error) {
	w := &st.w
	buf, pages, last := w.zeros[:0], uint64(0), b
	for {
		run := s.run(b)
		if buf, err = wire.AppendZero(buf, b.seq, run); err != nil {
			return nil, fmt.Errorf("stream %d: encode batch %d: %w", st.idx, b.seq, err)
		}
		pages, last = pages+run.Pages(), b
		if len(buf)+wire.HeaderSize+wire.RunSize > zeroGather {
			break
		}
		var ok bool
		select {
		case b, ok = <-st.queue:
		default:
		}
		if !ok {
			break
		}
		if b.kind != transport.KindZero {
			next = &b
			break
		}
	}
	w.zeros = buf
	if err := st.lock(noCancel, s.Done()); err != nil {
		return nil, err
	}
	s.stats.wire.Add(uint64(len(buf)))
	s.stats.zero.Add(pages)
	w.vec[0] = buf
	w.bufs = w.vec[:1]
	return next, s.writeLocked(st, last.seq, uint64(len(buf)))
}

func (s *session) writeBatch(st *stream, b batch) error {
	w := &st.w
	run := s.run(b)
	var hdr, payload []byte
	var err error
	compressed := false
	if b.kind == transport.KindZero {
		hdr, err = wire.AppendZero(w.prefix[:0], b.seq, run)
	} else {
		payload = w.read(b)
		if w.comp != nil {
			if c, ok := w.comp.compress(payload); ok {
				payload, compressed = c, true
			}
		}
		hdr, err = wire.AppendPagesHeader(w.prefix[:0], b.seq, run, compressed, len(payload))
	}
	if err != nil {
		return fmt.Errorf("stream %d: encode batch %d: %w", st.idx, b.seq, err)
	}
	if err := st.lock(noCancel, s.Done()); err != nil {
		return err
	}
	w.vec[0], w.vec[1] = hdr, payload
	w.bufs = w.vec[:]
	if payload == nil {
		w.bufs = w.vec[:1]
	}
	total := uint64(len(hdr) + len(payload))
	s.count(b, run, compressed, total)
	return s.writeLocked(st, b.seq, total)
}

// writeLocked writes w.bufs, total bytes of frames up to batch seq, on
// the stream the caller locked, and unlocks it. The caller counted them
// before: once they are out, the ACK and a Flush that waits for it may
// come back before the write returns. On a failed write only the bytes
// that went out stay counted.
func (s *session) writeLocked(st *stream, seq, total uint64) error {
	st.sent.Store(seq)
	if st.rc != nil {
		st.rc.begin()
	}
	n, err := st.w.bufs.WriteTo(st.conn)
	if st.rc != nil {
		if e := st.rc.end(); e != nil && err == nil {
			// Gathered records of these frames may be out, not all of
			// them (over TLS: failedAfter marks the stream broken).
			err, n = e, 0
		}
	}
	if err != nil {
		st.failedAfter(n)
	}
	st.unlock()
	if err != nil {
		s.stats.wire.Add(^(total - uint64(n) - 1)) // only n bytes went out
		return st.writeFailed(fmt.Sprintf("write batch %d", seq), err, false, nil, n, int64(total))
	}
	return nil
}

// read returns batch b's pages, read from the RAM file into the
// writer's buffer (region.read): reading them through the mapping would
// take a page fault per 64 KiB the first time (docs/BENCHMARKS.md,
// "End-to-end throughput").
func (w *writer) read(b batch) []byte {
	n := int(b.count) * pageSize
	if cap(w.data) < n {
		w.data = make([]byte, batchPages*pageSize)
	}
	buf := w.data[:n]
	b.reg.read(buf, b.first)
	return buf
}

func (s *session) count(b batch, run wire.Run, compressed bool, wireBytes uint64) {
	s.stats.wire.Add(wireBytes)
	if b.kind == transport.KindZero {
		s.stats.zero.Add(run.Pages())
		return
	}
	s.stats.data.Add(uint64(b.count))
	if compressed {
		s.stats.compressed.Add(uint64(b.count))
	}
}
