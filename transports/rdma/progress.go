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
// batch's data pages its writes have completed (setup version 5; 6):
//
//	source                                   destination
//	RUNS seq runs (control) ────────────────► the batch names these pages
//	fi_write ═══════════════════════════════► guest RAM (unseen)
//	completion: pages += chunk's pages
//	PROGRESS seq pages (control) ───────────► BytesWire += new pages × 4096,
//	  at most one every progressEvery,          PagesData += new pages
//	  only when more completed, and
//	  never past the RUNS sent before it
//	COMMIT seq pages (fabric) ══════════════► the rest of the batch counted,
//	                                            as far as its RUNS named it
//
// PROGRESS is a transport-internal MSG: seq is the batch, kind is
// progressKind, the payload one u64, the batch's data pages written so
// far (never less than the last PROGRESS said), at most the data pages
// that the batch's RUNS frames sent before it name (setup version 6: a
// RUNS frame may follow its writes, so a version-5 source reported
// pages the destination could not check). The batch's COMMIT must
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
// inflight, so both counts move while a Flush drains.
//
// What a lying source can make the destination count: no more than the
// batch's RUNS frames named, each run within guest RAM and at most guest
// RAM's pages per batch (recount, takeRuns); a PROGRESS past the RUNS
// before it, a COMMIT or RUNS past guest RAM, are protocol errors, and
// a COMMIT past its RUNS fails the session once they are all in
// (ackIfDone) having counted no more than they named. On the urgent
// path likewise: an urgent COMMIT counts the runs it lists, at most
// guest RAM's pages in all (more is a protocol error, ucommitted; until
// 2026-12-07 a COMMIT of 254 runs of all of guest RAM counted each,
// TestLyingUrgentCounts). The counts feed only Stats (the engine's
// report, progress and stall watch, and its check that a refused
// session wrote nothing, which a count too high makes fail the
// destination, never pass); guest RAM and Landed do not depend on them.
//
// Named but unwritten pages are safe, not only bounded: a source that
// names pages in RUNS and never writes them has them counted (up to
// guest RAM's pages per batch, each batch a COMMIT's round trip) and,
// at their MARK or COMMIT, reported to Landed, so a post-copy guest may
// run on what the destination's own RAM for this guest held there (an
// earlier copy of the page after a reconnect, an empty page at a fresh
// destination), as for a page the source never sends at all: nothing
// the source could not have written there itself. It gains nothing: only
// this migration's authenticated source holds the session's keys
// (another migration's source and strangers are refused before the KEYS:
// doc.go), and with them it may write any bytes into any registered
// page at any time, a named page included, so what that page holds is
// the source's to decide either way. Refusing it is not possible
// either: the destination's CPU takes no part in an RDMA write, so only
// a digest of every page, checked by reading all of guest RAM, would
// tell a named page that was written from one that was not (what
// one-sided writes exist to save), and a bound on a session's total
// would refuse an honest pre-copy, which sends pages again each pass.
// An honest source never does it: a batch that names pages a failed
// call did not write is never marked or committed, the next SendPages
// or Flush ends the session instead (send.go, writeRun, checkWritten;
// TestRunsAfterFailedCall, TestUnwrittenRunNeverLanded).
//
// The reporter writes under no context of the engine's (the session's
// end bounds it); writeLock keeps engine calls that write on the
// channel from waiting behind it past their contexts.
const progressEvery = 100 * time.Millisecond

// written is what the source's completed writes covered of the batch
// being built, and how much of the batch its RUNS frames named: the
// poller (or the driving engine goroutine) adds, the engine goroutine
// names, Flush moves both to the next batch, the reporter reads.
type written struct {
	mu                sync.Mutex
	seq, pages, named uint64
	note              chan struct{} // more pages completed or named
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

// name counts n more pages of the current batch named in RUNS frames
// written on the control channel.
func (w *written) name(n uint64) {
	w.mu.Lock()
	w.named += n
	w.mu.Unlock()
	wake(w.note)
}

// next starts batch seq: every write of the batch before has completed.
func (w *written) next(seq uint64) {
	w.mu.Lock()
	w.seq, w.pages, w.named = seq, 0, 0
	w.mu.Unlock()
}

// get returns the batch and its pages written so far.
func (w *written) get() (seq, pages uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, w.pages
}

// reportable returns the batch and what a PROGRESS may say of it: its
// pages written, as far as RUNS frames already on the control channel
// named them (a PROGRESS goes on the same channel, after them).
func (w *written) reportable() (seq, pages uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, min(w.pages, w.named)
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
		case <-s.Done():
			return
		}
		nseq, npages := w.reportable()
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
		case <-s.Done():
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

// progressed takes a PROGRESS (destination): data pages of the batch
// being received that the source wrote. It may not go back, nor name
// more than the batch's RUNS frames named so far (they came before it
// on this channel) or its COMMIT names.
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
	case f.Seq > r.next || n < r.progress || r.cm != nil && n > r.cm.pages:
		return fmt.Errorf("%w: PROGRESS of batch %d (%d pages), expected batch %d (%d pages reported)", transport.ErrProtocol,
			f.Seq, n, r.next, r.progress)
	case n > r.runPages:
		return fmt.Errorf("%w: PROGRESS of batch %d claims %d data pages, its RUNS named %d", transport.ErrProtocol,
			f.Seq, n, r.runPages)
	}
	r.progress = n
	s.recount()
	return nil
}

// recount counts in Stats the data pages the source says the batch
// wrote (its COMMIT's, else its last PROGRESS's) as far as its RUNS
// frames named them (r.mu held): the COMMIT comes on the fabric, maybe
// before the batch's last RUNS frames, so the rest is counted as they
// come; whether the two agree is known only at the batch's end
// (ackIfDone). So the count never exceeds what the RUNS named, at most
// guest RAM's pages per batch (takeRuns).
func (s *session) recount() {
	r := &s.rcv
	claimed := r.progress
	if r.cm != nil {
		claimed = r.cm.pages // not less than progress (committed)
	}
	if n := min(claimed, r.runPages); n > r.counted {
		s.countData(n - r.counted)
		r.counted = n
	}
}

// countData counts n data pages received.
func (s *session) countData(n uint64) {
	s.stats.data.Add(n)
	s.stats.wire.Add(n * pageSize)
}
