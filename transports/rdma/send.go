package rdma

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// writeChunk is the most one fi_write carries.
const writeChunk = 1 << 20

// Completion contexts on the source.
const (
	ctxWrite  = 1
	ctxCommit = 2
	ctxMark0  = 3 // + buffer index
)

// sender is the source's state: writes in flight, the batch being
// built, the last acknowledged batch.
type sender struct {
	buffers // holds the COMMIT being sent and the MARKs
	// The bulk endpoint's operations in flight; with commitEarly (tests
	// only) Flush also trusts the ACK alone (must be caught).
	queue
	acked   atomic.Uint64
	ackNote notifier

	// Engine goroutine only.
	seq            uint64 // batch being built
	zeros, pages   uint64 // its zero frames and data pages so far
	dlo, dhi       uint64 // page range its data runs cover
	zlo, zhi       uint64 // page range its zero runs cover
	runs           []byte // its data runs not yet sent in RUNS frames (commit.go)
	runFrames      uint64 // its RUNS frames sent
	runPages       uint64 // the data pages its runs name, sent or not
	markedPages    uint64 // its data pages a MARK covers
	marksPosted    atomic.Uint64
	marksDone      atomic.Uint64 // MARKED answers
	markNote       notifier      // a MARKED answer came
	markBusy       [maxMarks]atomic.Bool
	committed      atomic.Uint64 // last batch whose COMMIT was posted
	written        written       // what its writes completed (PROGRESS, progress.go)
	rtt            roundTrips    // when its COMMITs and MARKs were posted (Stats.RTT, rtt.go)
	unwritten      error         // its RUNS name pages a failed SendPages did not write (writeRun); nil: none
	commitInFlight bool
	mu             sync.Mutex
	hook           func() error        // tests only: runs first in register; its error fails it
	markWait       func()              // tests only: runs when a MARK must wait for room
	postHook       func(mark bool)     // tests only: runs just before a MARK (true) or COMMIT waits for room in the queue and posts
	claimWait      func(waited bool)   // tests only: runs before (false) and after (true) claim waits for an urgent copy
	commitPages    func(uint64) uint64 // tests only: the data pages a COMMIT names, given the batch's
}

// register registers guest RAM for the provider to read and the send
// buffer; it runs after the fabric connection is up.
func (snd *sender) register(s *session) error {
	if snd.hook != nil {
		if err := snd.hook(); err != nil {
			return err
		}
	}
	if err := s.ram.register(s.ep, fabric.AccessWrite, "for the provider", func(r *region, mr *fabric.MR) { r.mr = mr }); err != nil {
		return err
	}
	if err := snd.open(s.ep, pageSize, fabric.AccessSend, "the send buffer"); err != nil {
		return err
	}
	snd.queue.init("", s.ep, s.sendCompleted)
	s.populate = !pins(s.caps)
	snd.seq = 1
	snd.written.init(snd.seq)
	snd.rtt.start(&s.stats.rtt)
	snd.resetRanges()
	return nil
}

func (snd *sender) resetRanges() {
	snd.dlo, snd.dhi, snd.zlo, snd.zhi = ^uint64(0), 0, ^uint64(0), 0
}

func overlaps(first, count, lo, hi uint64) bool { return first < hi && first+count > lo }

// pollSend runs on the source for the session: it drives the
// provider's progress (unless the engine drives it, queue.drive) and
// counts completions; a failed write fails the session.
func (s *session) pollSend() {
	var cs [32]fabric.Completion
	s.poll(&s.snd.queue, cs[:])
}

// sendCompleted counts the bulk endpoint's completions cs. Their
// written pages are counted (Stats, and the batch's for PROGRESS) before
// they leave inflight: Flush takes inflight at 0 for every write of the
// batch counted, then moves the batch's count to the next batch.
func (s *session) sendCompleted(cs []fabric.Completion) error {
	if writes := s.writesCompleted(cs); writes > 0 {
		s.snd.written.add(writes)
	}
	for _, c := range cs {
		s.snd.inflight.Add(-1)
		if i := int(c.Ctx) - ctxMark0; i >= 0 && i < maxMarks {
			s.snd.markBusy[i].Store(false)
		}
		if c.Ctx == ctxCommit {
			s.snd.mu.Lock()
			s.snd.commitInFlight = false
			s.snd.mu.Unlock()
		}
	}
	wake(s.snd.progress)
	return nil
}

// waitProgress waits for a completion, the session's end or ctx.
func (s *session) waitProgress(ctx context.Context) error { return s.waitOn(ctx, &s.snd.queue) }

// sendPages implements SendPages: data runs become fi_writes from guest
// RAM straight into the destination's, zero runs ZERO frames on the
// control channel. A run that overlaps a run of the other kind in the
// same batch commits the batch first, so the later one wins; so does a
// data run that would make the batch's runs name more pages than guest
// RAM has (pages sent twice in one batch), which the destination
// refuses (takeRuns). The call ends with the RUNS frames of its runs,
// so that a PROGRESS may count their pages (written.reportable).
func (s *session) sendPages(ctx context.Context, runs []transport.PageRun) error {
	for _, r := range runs {
		if err := r.Check(s.ram.Pages); err != nil {
			return fmt.Errorf("send pages: %w", err)
		}
	}
	if err := s.checkWritten(); err != nil {
		return err
	}
	if s.committing() { // a Flush's whose context ended: its batch is closed
		if err := s.finishBatch(ctx); err != nil {
			return err
		}
	}
	snd := &s.snd
	for _, r := range runs {
		if err := s.Err(); err != nil {
			return err
		}
		var err error
		if r.Kind == transport.KindData {
			if overlaps(r.First, r.Count, snd.zlo, snd.zhi) || snd.runPages+r.Count > s.ram.Pages {
				err = s.flush(ctx)
			}
			if err == nil {
				err = s.claim(ctx, r)
			}
			if err == nil {
				err = s.writeRun(ctx, r)
			}
		} else {
			if overlaps(r.First, r.Count, snd.dlo, snd.dhi) {
				err = s.flush(ctx)
			}
			if err == nil {
				err = s.claim(ctx, r)
			}
			if err == nil {
				err = s.zeroRun(ctx, r)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := s.sendRuns(ctx); err != nil {
		return err
	}
	return s.mark(ctx)
}

// mark posts a MARK after the batch's writes so far, so that Landed
// reports them before the Flush (not without FI_ORDER_SAW). With
// maxMarks unanswered, or the send that last used its buffer not yet
// completed, it first waits for room: a MARKED answer or that
// completion, under ctx. Until 2026-12-07 it skipped the MARK then, and
// the call's pages stayed unreported until a later call's MARK or the
// Flush: a caller that waited for them first waited for ever
// (TestMarkWaitsForRoom).
func (s *session) mark(ctx context.Context) error {
	snd := &s.snd
	if snd.pages == snd.markedPages || !s.caps.SAW || s.caps.DeliveryComplete || snd.commitEarly {
		return nil
	}
	if err := s.sendRuns(ctx); err != nil {
		return err
	}
	posted := snd.marksPosted.Load()
	i := int(posted % maxMarks)
	if err := s.waitMarkRoom(ctx, posted, i); err != nil {
		return fmt.Errorf("mark batch %d: %w", snd.seq, err)
	}
	b := snd.buf[(1+i)*64 : (1+i)*64+commitSize]
	commit{seq: snd.seq, runs: snd.runFrames, mark: true}.put(b)
	if snd.postHook != nil {
		snd.postHook(true)
	}
	if err := s.post(ctx, func() error { return s.postMark(b, i) }); err != nil {
		return fmt.Errorf("mark batch %d: %w", snd.seq, err)
	}
	snd.markedPages = snd.pages
	s.stats.wire.Add(commitSize)
	return nil
}

// postMark posts the MARK in buffer i. Its buffer is busy and it counts
// as posted from just before the send, whose completion or MARKED answer
// may come before the send returns, and neither once the send failed:
// a MARK whose post waited for room in the queue until its context
// ended leaves no trace. Until 2026-12-07 both were set before that
// wait: such a MARK left its buffer busy and the count one ahead for
// good, and the call whose MARK took that buffer next (maxMarks calls
// later) waited until its own context ended
// (TestMarkNotPostedLeavesNoTrace).
func (s *session) postMark(b []byte, i int) error {
	snd := &s.snd
	snd.markBusy[i].Store(true)
	snd.marksPosted.Add(1)
	snd.rtt.markAt[i].Store(snd.rtt.now())
	if err := s.ep.Send(b, snd.bufMR, uint64(ctxMark0+i)); err != nil {
		snd.markBusy[i].Store(false)
		snd.marksPosted.Add(^uint64(0))
		return err
	}
	return nil
}

// waitMarkRoom waits until the MARK after the posted ones may go in
// buffer i: fewer than maxMarks unanswered, and the send of the MARK
// that used buffer i before completed.
func (s *session) waitMarkRoom(ctx context.Context, posted uint64, i int) error {
	snd := &s.snd
	if posted-snd.marksDone.Load() >= maxMarks || snd.markBusy[i].Load() {
		if snd.markWait != nil {
			snd.markWait()
		}
	}
	if posted-snd.marksDone.Load() >= maxMarks {
		if err := s.waitMarked(ctx, posted-maxMarks+1); err != nil {
			return err
		}
	}
	for snd.markBusy[i].Load() {
		if err := s.waitProgress(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitMarked waits until n MARKs were answered; the session's poller
// moves what is posted meanwhile.
func (s *session) waitMarked(ctx context.Context, n uint64) error {
	snd := &s.snd
	defer snd.away()()
	return s.waitNote(ctx, &snd.markNote, func() bool { return snd.marksDone.Load() >= n })
}

// waitAck waits for the destination's ACK of batch seq, which comes on
// the control channel: the session's poller moves what is still posted
// meanwhile (with commitEarly, the writes after the COMMIT).
func (s *session) waitAck(ctx context.Context, seq uint64) error {
	snd := &s.snd
	defer snd.away()()
	err := s.waitNote(ctx, &snd.ackNote, func() bool { return snd.acked.Load() >= seq })
	if err == nil || err == ctx.Err() {
		return err
	}
	return fmt.Errorf("flush batch %d: %w", seq, err)
}

// claim puts run r in the per-page order (order.claimBulk): when an
// urgent copy of one of its pages, queued before, is not yet in guest
// RAM, it commits the batch built so far (the urgent copy may wait for
// it), then claims r for good behind the copies queued until then
// (order.claimBehind) and waits for those. A copy of r's pages queued
// after that is held until r's batch is acknowledged, so the wait is
// for a set fixed at the claim. Until 2026-12-07 claim waited for one
// copy and tried again: a page queued urgently again and again
// (SendPagesUrgent in a loop, which the engine never does: urgent.go)
// held the SendPages for as long as that went on (TestClaimNotStarved).
func (s *session) claim(ctx context.Context, r transport.PageRun) error {
	if s.ord.claimBulk(r) == nil {
		return nil
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	for _, it := range s.ord.claimBehind(r) {
		if s.snd.claimWait != nil {
			s.snd.claimWait(false)
		}
		if err := s.waitUrgentDone(ctx, it); err != nil {
			return err
		}
		if s.snd.claimWait != nil {
			s.snd.claimWait(true)
		}
	}
	return nil
}

// writeRun names data run r in the batch's runs and posts its writes.
// When it fails before any RUNS frame named r and before it posted any
// of r's writes (a RUNS frame's context ended, or the first write's
// while it waited for room), it takes r's name back (unname), so that
// the batch still names exactly what it wrote and a later Flush commits
// it. What it cannot take back: a run a RUNS frame already named (a
// large run is named before its writes) whose writes then failed, and
// a run whose writes were posted in part (the context ended half-way
// through a run larger than one write, or between a run's spans in two
// regions). Such a batch names pages that were not written, and a MARK
// would make the destination report them to Landed (reportMarked) as
// much as a COMMIT, so the batch can never be marked or committed:
// writeRun records it (snd.unwritten), and the next SendPages or Flush
// ends the session instead (checkWritten). Until 2026-12-07 the next
// SendPages went on and its MARK reported the unwritten pages; only the
// Flush after it was refused by the destination (RUNS and COMMIT
// disagree), too late for Landed (TestUnwrittenRunNeverLanded). The
// engine never calls either after a failed SendPages (README.md, "An
// urgent COMMIT names at most guest RAM's pages"), so for it nothing
// changes: the session is left as the failed call left it.
func (s *session) writeRun(ctx context.Context, r transport.PageRun) error {
	snd := &s.snd
	snd.dlo, snd.dhi = min(snd.dlo, r.First), max(snd.dhi, r.First+r.Count)
	snd.runPages += r.Count
	entries, named := 0, false // r's entries in snd.runs; whether a RUNS frame named some of r
	failed := func(err error) error {
		if named || !snd.unname(entries, r.Count) {
			snd.spoil(r, err)
		}
		return err
	}
	for first, left := r.First, r.Count; left > 0; {
		n := min(left, 1<<31)
		snd.runs = binary.BigEndian.AppendUint64(snd.runs, first)
		snd.runs = binary.BigEndian.AppendUint32(snd.runs, uint32(n))
		entries++
		first, left = first+n, left-n
		if len(snd.runs) >= maxRunsSize { // while the writes move
			if err := s.sendRuns(ctx); err != nil {
				return failed(err)
			}
			named = true // sendRuns sent all it held
		}
	}
	// A large run is named before its writes go, so that the destination
	// populates its pages ahead of them (receive.go, takeRuns), and its
	// pages are populated here before the provider reads them (ram.go);
	// the MARK or COMMIT after the writes still says when they are visible.
	if r.Count >= populateMin {
		if err := s.sendRuns(ctx); err != nil {
			return failed(err)
		}
		named = true
		if s.populate {
			s.ram.spans(r.First, r.Count, func(g *region, off, n uint64) error {
				g.populate(off, n, false)
				return nil
			})
		}
	}
	// snd.pages grows by a span once all its writes are posted; a run
	// not named yet (fewer than populateMin pages) is one write per
	// span, so an unchanged count means none of its writes was posted.
	posted := snd.pages
	err := s.postWrites(ctx, &snd.queue, r, &snd.pages, func(g *region, chunk []byte, at uint64) func() error {
		return func() error { return s.ep.Write(chunk, g.mr, g.rbase+at, g.rkey, writeCtx(chunk)) }
	})
	if err != nil {
		err = fmt.Errorf("write pages: %w", err)
		if snd.pages == posted {
			return failed(err)
		}
		snd.spoil(r, err) // posted in part: named (now or by the next RUNS frame) whole
		return err
	}
	return nil
}

// spoil records that the batch names run r, or will when its RUNS
// frames go, without all of r's writes posted (err: why they were not).
func (snd *sender) spoil(r transport.PageRun, err error) {
	if snd.unwritten == nil {
		snd.unwritten = fmt.Errorf("batch %d names pages %d+%d, which a failed SendPages did not all write (%v): "+
			"a MARK or COMMIT would report them to the destination's Landed; the session cannot go on", snd.seq, r.First, r.Count, err)
	}
}

// checkWritten ends the session if the batch names pages that were not
// written (snd.unwritten), before a SendPages or Flush could send its
// MARK or COMMIT; the destination is told (ABORT).
func (s *session) checkWritten() error {
	if s.snd.unwritten != nil {
		s.fail(s.snd.unwritten, wire.CodeFailed)
		return s.Err()
	}
	return nil
}

// post posts one operation, waiting for room in the queue.
func (s *session) post(ctx context.Context, op func() error) error {
	return s.postOn(ctx, &s.snd.queue, op)
}

func (s *session) zeroRun(ctx context.Context, r transport.PageRun) error {
	snd := &s.snd
	snd.zlo, snd.zhi = min(snd.zlo, r.First), max(snd.zhi, r.First+r.Count)
	for first, left := r.First, r.Count; left > 0; {
		n := min(left, wire.MaxZeroPages)
		f, err := wire.AppendZero(nil, snd.seq, wire.Run{First: first, Count: uint32(n)})
		if err != nil {
			return err
		}
		if err := s.writeFrame(ctx, f); err != nil {
			return fmt.Errorf("send zero pages: %w", err)
		}
		snd.zeros++
		first, left = first+n, left-n
	}
	s.stats.zero.Add(r.Count)
	return nil
}

// flush implements Flush: the batch's COMMIT after its writes, then the
// destination's ACK (finishBatch). A Flush whose context ended after
// its COMMIT went leaves the batch closed, its ACK owed (committing):
// the next Flush, and the next SendPages before it queues anything,
// wait for that ACK and begin the next batch, as tcp's SendPages and
// Flush wait for an unfinished Flush. Until 2026-12-07 the next Flush
// posted the same COMMIT again, and the next SendPages named its runs
// in the batch already committed; the destination refused either as a
// protocol violation and aborted the session
// (TestFlushAfterItsContextEnded). The engine never calls either again
// on a session after a failed Flush (README.md, "A call whose context
// ended"); the contract lets a caller do so.
func (s *session) flush(ctx context.Context) error {
	snd := &s.snd
	if err := s.Err(); err != nil {
		return err
	}
	if err := s.checkWritten(); err != nil {
		return err
	}
	if s.committing() {
		return s.finishBatch(ctx)
	}
	// A batch with runs claimed but none sent (SendPages failed between
	// the two) is still committed: urgent copies may wait for its ACK.
	if snd.pages == 0 && snd.zeros == 0 && !s.ord.marked() {
		return nil
	}
	if s.caps.DeliveryComplete {
		// Without send-after-write ordering the COMMIT may go only once
		// every write is visible at the target (FI_DELIVERY_COMPLETE).
		for snd.inflight.Load() > 0 {
			if err := s.waitProgress(ctx); err != nil {
				return err
			}
		}
	}
	for {
		snd.mu.Lock()
		busy := snd.commitInFlight
		snd.mu.Unlock()
		if !busy {
			break
		}
		if err := s.waitProgress(ctx); err != nil {
			return err
		}
	}
	if err := s.sendRuns(ctx); err != nil {
		return fmt.Errorf("commit batch %d: %w", snd.seq, err)
	}
	c := commit{seq: snd.seq, zeros: snd.zeros, pages: snd.pages, runs: snd.runFrames}
	if snd.commitPages != nil {
		c.pages = snd.commitPages(c.pages)
	}
	c.put(snd.buf)
	if snd.postHook != nil {
		snd.postHook(false)
	}
	if err := s.post(ctx, func() error { return s.postCommit(c.seq) }); err != nil {
		return fmt.Errorf("commit batch %d: %w", c.seq, err)
	}
	for _, w := range snd.deferred { // tests only (commitEarly)
		if err := s.post(ctx, w); err != nil {
			return err
		}
	}
	snd.deferred = nil
	s.stats.wire.Add(commitSize)
	return s.finishBatch(ctx)
}

// postCommit posts the COMMIT of batch seq, which snd.buf holds. It is
// in flight and the last committed from just before the send, whose
// completion or ACK may come before the send returns, and neither once
// the send failed: a COMMIT whose post waited for room in the queue
// until its context ended leaves no trace, and the next Flush posts it
// (TestFlushAfterItsContextEnded, "no room").
func (s *session) postCommit(seq uint64) error {
	snd := &s.snd
	snd.mu.Lock()
	snd.commitInFlight = true
	snd.mu.Unlock()
	snd.committed.Store(seq)
	snd.rtt.commitAt.Store(snd.rtt.now())
	if err := s.ep.Send(snd.buf[:commitSize], snd.bufMR, ctxCommit); err != nil {
		snd.mu.Lock()
		snd.commitInFlight = false
		snd.mu.Unlock()
		snd.committed.Store(seq - 1) // the batch before's, or 0
		return err
	}
	return nil
}

// committing reports whether the batch's COMMIT was posted and its ACK
// not yet taken: a Flush's whose context ended after its COMMIT went.
func (s *session) committing() bool { return s.snd.committed.Load() == s.snd.seq }

// finishBatch waits for the end of the batch whose COMMIT was posted,
// then begins the next batch. A write the target refused completes
// with an error at the source only (sockets), while the COMMIT behind
// it is still acknowledged: the batch counts only once every operation
// completed without one, and then its ACK came.
func (s *session) finishBatch(ctx context.Context) error {
	snd := &s.snd
	seq := snd.seq
	for snd.inflight.Load() > 0 && !snd.commitEarly {
		if err := s.waitProgress(ctx); err != nil {
			return fmt.Errorf("flush batch %d: %w", seq, err)
		}
	}
	if err := s.waitAck(ctx, seq); err != nil {
		return err
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("flush batch %d: %w", seq, err)
	}
	snd.seq++
	snd.written.next(snd.seq) // every write of batch seq-1 completed
	snd.zeros, snd.pages, snd.runFrames, snd.runPages, snd.markedPages = 0, 0, 0, 0, 0
	snd.resetRanges()
	s.ord.batchDone(snd.seq)
	return nil
}

// sendRuns sends the batch's data runs not yet sent, in RUNS frames;
// a PROGRESS may name their pages once they are written (written.name).
// Each frame written leaves snd.runs at once: when a later frame fails
// (its context ended while it waited for the channel), the runs left are
// those not sent, and the next sendRuns sends only them. Until
// 2026-12-07 the whole buffer stayed and went again, so the destination
// counted the sent runs twice and refused the batch's COMMIT
// (TestRunsAfterFailedCall).
func (s *session) sendRuns(ctx context.Context) error {
	snd := &s.snd
	sent := 0
	defer func() { snd.runs = snd.runs[:copy(snd.runs, snd.runs[sent:])] }()
	for sent < len(snd.runs) {
		b := snd.runs[sent:]
		n := min(len(b), maxRunsSize/runSize*runSize)
		if err := s.writeFrame(ctx, appendRunsHeader(nil, snd.seq, n), b[:n]); err != nil {
			return err
		}
		var pages uint64
		for o := 0; o < n; o += runSize {
			pages += uint64(binary.BigEndian.Uint32(b[o+8:]))
		}
		snd.written.name(pages)
		sent += n
		snd.runFrames++
	}
	return nil
}

// unname takes back the last entries of snd.runs, naming pages pages,
// that writeRun appended for a run it did not post, and reports whether
// it did: not when some of them were sent (a failed sendRuns that sent
// the frames before the run's last one, which only a run of more than
// 2^31 pages has): those stay named (writeRun's caller spoils the
// batch).
func (snd *sender) unname(entries int, pages uint64) bool {
	if len(snd.runs) < entries*runSize {
		return false
	}
	snd.runs = snd.runs[:len(snd.runs)-entries*runSize]
	snd.runPages -= pages
	return true
}

// sendCtrl handles the destination's own control frames: ACK, MARKED.
// Each answer is a round trip's end (rtt.go): a MARKED of a batch not
// yet acknowledged that of the earliest MARK unanswered, the ACK of the
// last COMMIT posted that of that COMMIT.
func (s *session) sendCtrl(f wire.Frame) error {
	if f.Type == wire.TypeMsg && f.Kind == markedKind && len(f.Payload) == 0 && s.snd.marksDone.Load() < s.snd.marksPosted.Load() {
		if f.Seq > s.snd.acked.Load() { // a MARKED of a batch acknowledged is not that of the last ACK
			s.snd.rtt.answered(s.snd.rtt.markAt[s.snd.marksDone.Load()%maxMarks].Load())
		}
		s.snd.marksDone.Add(1)
		s.snd.markNote.notify()
		return nil
	}
	c := s.snd.committed.Load()
	if f.Type != wire.TypeAck || f.Seq > c {
		return fmt.Errorf("%w: the destination sent %v %d (batch %d was the last committed)", transport.ErrProtocol, f.Type, f.Seq, c)
	}
	if f.Seq == c {
		s.snd.rtt.acked(s.snd.rtt.commitAt.Load())
	}
	s.snd.acked.Store(f.Seq)
	s.snd.ackNote.notify()
	return nil
}

func memlockHint(c fabric.Caps) string {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l) != nil || c.Provider != "verbs" {
		return ""
	}
	return fmt.Sprintf(" (verbs pins registered memory: RLIMIT_MEMLOCK is %d bytes and must cover guest RAM, registered once for both endpoints, plus a few pages of buffers; raise it with ulimit -l or LimitMEMLOCK=infinity)", l.Cur)
}
