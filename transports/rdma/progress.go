package rdma

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// PROGRESS: how the destination counts bulk data while it moves.
//
// The source's writes land in the destination's guest RAM without its
// CPU, so the destination learns of a batch's pages only at a MARK or
// at the batch's COMMIT (the source's Flush; the engine Flushes once per
// pass). Counted only there, its Stats stood still for a whole pass but
// for the RUNS frames, and the engine's stall watch on the destination
// (engine receive.go, recvWatched) could take a slow pass for a stopped
// one. So the source tells it, on the control channel, how many of the
// batch's data pages its writes have completed (setup version 5):
//
//	source                                   destination
//	fi_write ═══════════════════════════════► guest RAM (unseen)
//	completion: pages += chunk's pages
//	PROGRESS seq pages (control) ───────────► BytesWire += new pages × 4096,
//	  at most one every progressEvery,          PagesData += new pages
//	  and only when more completed
//	COMMIT seq pages (fabric) ══════════════► the rest of the batch counted
//
// PROGRESS is a transport-internal MSG: seq is the batch, kind is
// progressKind, the payload one u64, the batch's data pages written so
// far (never less than the last PROGRESS said). The batch's COMMIT must
// not name fewer pages than its PROGRESS frames did. A PROGRESS of a
// batch already committed is dropped: its COMMIT counted it whole.
//
// It counts and nothing else: no page is read or reported at a
// PROGRESS (Landed reports pages at their MARK or COMMIT, once visible).
// A completed write is one the source's provider finished sending (with
// FI_DELIVERY_COMPLETE: one visible at the destination), so the count
// may run ahead of guest RAM by what the link and its socket buffers
// hold; once they are full the completions, and the count, stop, so a
// link that stops still looks stopped. The source's own Stats count the
// same completions (queue.go, writesCompleted), before they leave
// inflight, so both counts move while a Flush drains. A source whose
// writes never complete, or that lies about them, is not caught here:
// its COMMIT fails the session if it names fewer pages than it
// reported. The reporter writes under no context of the engine's (the
// session's end bounds it); writeLock keeps engine calls that write on
// the channel from waiting behind it past their contexts.
const progressEvery = 100 * time.Millisecond

// written is what the source's completed writes covered of the batch
// being built: the poller (or the driving engine goroutine) adds, Flush
// moves it to the next batch, the reporter reads.
type written struct {
	mu         sync.Mutex
	seq, pages uint64
	note       chan struct{} // more pages completed
}

func (w *written) init(seq uint64) {
	w.note = make(chan struct{}, 1)
	w.next(seq)
}

// add counts n more pages written of the current batch.
func (w *written) add(n uint64) {
	w.mu.Lock()
	w.pages += n
	w.mu.Unlock()
	wake(w.note)
}

// next starts batch seq: every write of the batch before has completed.
func (w *written) next(seq uint64) {
	w.mu.Lock()
	w.seq, w.pages = seq, 0
	w.mu.Unlock()
}

func (w *written) get() (seq, pages uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, w.pages
}

// reportWritten sends PROGRESS frames until the session ends (source);
// a session whose sender commits early (tests only) has none, since its
// writes complete in the next batch.
func (s *session) reportWritten() {
	w := &s.snd.written
	var seq, pages uint64 // last reported
	for {
		select {
		case <-w.note:
		case <-s.done:
			return
		}
		nseq, npages := w.get()
		if npages == 0 || nseq == seq && npages == pages {
			continue
		}
		// Bounded by the session: its end sets the channel's deadline.
		if err := s.writeFrame(context.Background(), appendProgress(nil, nseq, npages)); err != nil {
			return
		}
		seq, pages = nseq, npages
		t := time.NewTimer(progressEvery)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}
}

// appendProgress appends the PROGRESS frame of batch seq: pages written.
func appendProgress(b []byte, seq, pages uint64) []byte {
	return binary.BigEndian.AppendUint64(appendInternal(b, seq, progressKind, 8), pages)
}

// parseProgress decodes a PROGRESS frame's payload.
func parseProgress(f wire.Frame) (uint64, error) {
	if f.Kind != progressKind || len(f.Payload) != 8 {
		return 0, fmt.Errorf("%w: PROGRESS frame of kind %d with %d bytes", transport.ErrProtocol, f.Kind, len(f.Payload))
	}
	return binary.BigEndian.Uint64(f.Payload), nil
}

// progressed counts a PROGRESS (destination): data pages of the batch
// being received that the source wrote, beyond those counted before.
func (s *session) progressed(f wire.Frame) error {
	n, err := parseProgress(f)
	if err != nil {
		return err
	}
	r := &s.rcv
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case f.Seq < r.next:
		return nil // committed meanwhile: counted whole
	case f.Seq > r.next || n < r.counted && r.cm == nil || r.cm != nil && n > r.cm.pages:
		return fmt.Errorf("%w: PROGRESS of batch %d (%d pages), expected batch %d (%d pages counted)", transport.ErrProtocol,
			f.Seq, n, r.next, r.counted)
	}
	if n > r.counted { // with the COMMIT in, counted is its pages
		s.countData(n - r.counted)
		r.counted = n
	}
	return nil
}

// countData counts n data pages received.
func (s *session) countData(n uint64) {
	s.stats.data.Add(n)
	s.stats.wire.Add(n * pageSize)
}
