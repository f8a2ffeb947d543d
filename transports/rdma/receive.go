package rdma

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// deliverEvery bounds the frames a destination's channel reader takes
// before it reports what landed to a pusher (LandedQueue.Deliver), even
// while more input is already buffered.
const deliverEvery = 16

// Receive buffers for COMMITs and MARKs: the source has one COMMIT and
// at most maxMarks MARKs unanswered.
const (
	recvSlots = 16
	slotSize  = 64
	ctxSlot0  = 100
)

// receiver is the destination's state: the batch being assembled.
type receiver struct {
	buffers
	mu    sync.Mutex
	next  uint64  // the batch expected next
	cm    *commit // its COMMIT, once arrived
	zeros uint64  // its zero frames applied
	// Its RUNS frames taken, and the data runs and pages they named;
	// where each frame's runs end in runs; the frames a MARK covered; the
	// runs reported to Landed so far.
	runFrames, runPages uint64
	runs                []transport.PageRun
	frameEnd            []int
	markFrames          uint64
	reported            int
	progress            uint64                // its data pages its last PROGRESS reported (progress.go)
	counted             uint64                // its data pages counted in Stats (recount)
	scratch             []transport.PageRun   // takeRuns only
	hook                func() error          // tests only: runs first in register; its error fails it
	repost              atomic.Pointer[error] // tests only: re-posting a receive buffer fails with it
}

// register registers guest RAM for remote writes and posts the receive
// buffers; it runs before the fabric connection is accepted.
func (rcv *receiver) register(s *session, e *fabric.Endpoint) error {
	if rcv.hook != nil {
		if err := rcv.hook(); err != nil {
			return err
		}
	}
	c := e.Caps()
	s.punch = !pins(c)
	s.populate = !pins(c)
	if err := s.ram.register(e, fabric.AccessRemoteWrite, "for remote writes", func(r *region, mr *fabric.MR) { r.mr = mr }); err != nil {
		return err
	}
	rcv.next = 1
	if err := rcv.open(e, recvSlots*slotSize, fabric.AccessRecv, "receive buffers"); err != nil {
		return err
	}
	return rcv.postRecvs(e, recvSlots, slotSize, ctxSlot0, "receive")
}

func (rcv *receiver) slot(i int) []byte { return rcv.buf[i*slotSize : (i+1)*slotSize] }

// pollReceive takes COMMITs from the fabric endpoint; it also drives the
// provider's progress for the source's writes. A write outside the
// registration or with a wrong key makes the provider drop the
// connection (tcp, net) or fail it.
func (s *session) pollReceive() {
	var cs [8]fabric.Completion
	s.poll(polled("the connection failed (a write with a wrong key or outside guest RAM ends it): ", s.ep, func(cs []fabric.Completion) error {
		for _, c := range cs {
			i := int(c.Ctx) - ctxSlot0
			if i < 0 || i >= recvSlots || c.Len > slotSize {
				return fmt.Errorf("%w: unexpected completion %+v", transport.ErrProtocol, c)
			}
			cm, err := parseCommit(s.rcv.slot(i)[:c.Len])
			if err == nil {
				err = s.rcv.repostRecv(s.ep, i, c.Ctx)
			}
			if err == nil && cm.mark {
				err = s.marked(cm)
			} else if err == nil {
				err = s.committed(cm)
			}
			if err != nil {
				return err
			}
		}
		s.Landed.Deliver()
		return nil
	}), cs[:])
}

// repostRecv posts receive buffer i again, with completion context
// ctx, once its COMMIT or MARK was taken. Its failure is this side's
// (the provider refused the buffer), not the source's: the session
// fails and the source hears CodeFailed (TestRepostFails).
func (rcv *receiver) repostRecv(e *fabric.Endpoint, i int, ctx uint64) error {
	var err error
	if injected := rcv.repost.Load(); injected != nil {
		err = *injected
	} else {
		err = e.Recv(rcv.slot(i), rcv.bufMR, ctx)
	}
	if err != nil {
		return fmt.Errorf("post receive: %w", err)
	}
	return nil
}

// committed records batch cm's COMMIT: its writes are visible now.
func (s *session) committed(cm commit) error {
	r := &s.rcv
	r.mu.Lock()
	defer r.mu.Unlock()
	if cm.seq != r.next || r.cm != nil || r.runFrames > cm.runs || r.markFrames > cm.runs { // pages are checked against the RUNS
		return fmt.Errorf("%w: COMMIT of batch %d (%d pages), expected batch %d", transport.ErrProtocol, cm.seq, cm.pages, r.next)
	}
	if r.progress > cm.pages {
		return fmt.Errorf("%w: COMMIT of batch %d names %d data pages, its PROGRESS %d", transport.ErrProtocol, cm.seq, cm.pages, r.progress)
	}
	if cm.pages > s.ram.Pages { // a batch's RUNS may not name more (takeRuns)
		return fmt.Errorf("%w: COMMIT of batch %d names %d data pages, guest RAM has %d", transport.ErrProtocol, cm.seq, cm.pages, s.ram.Pages)
	}
	r.cm = &cm
	s.recount() // the rest as far as the RUNS named them: PROGRESS counted the others
	s.stats.wire.Add(commitSize)
	return s.ackIfDone()
}

// receiveCtrl applies the source's ZERO frames and takes its RUNS and
// PROGRESS frames.
func (s *session) receiveCtrl(f wire.Frame) error {
	if f.Type == wire.TypeMsg && f.Kind == progressKind { // seq != 0
		return s.progressed(f)
	}
	if f.Type == wire.TypeMsg { // seq != 0: RUNS
		return s.takeRuns(f)
	}
	if f.Type != wire.TypeZero {
		return fmt.Errorf("%w: the source sent %v on the control channel", transport.ErrProtocol, f.Type)
	}
	run := transport.PageRun{First: f.Run.First, Count: uint64(f.Run.Count), Kind: transport.KindZero}
	if err := run.Check(s.ram.Pages); err != nil {
		return fmt.Errorf("%w: %w", transport.ErrProtocol, err)
	}
	r := &s.rcv
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.Seq != r.next || (r.cm != nil && r.zeros >= r.cm.zeros) {
		return fmt.Errorf("%w: ZERO frame of batch %d, expected batch %d", transport.ErrProtocol, f.Seq, r.next)
	}
	s.applyZero(run)
	r.zeros++
	s.Landed.Push(run)
	return s.ackIfDone()
}

// takeRuns records a RUNS frame: data runs the batch wrote, reported to
// Landed at a MARK or the COMMIT. The source sends the frame naming a
// large run before the run's writes, so its pages are populated here
// ahead of them (ram.go), before the frame is taken: so before the
// batch can be acknowledged (which frees urgent copies of its pages) and
// before any later ZERO frame is applied, the populating never makes a
// page present behind another path's back.
func (s *session) takeRuns(f wire.Frame) error {
	r := &s.rcv
	runs, n, err := parseRuns(f, s.ram.Pages, r.scratch[:0]) // the control reader's own
	r.scratch = runs
	if err != nil {
		return err
	}
	if s.populate {
		for _, run := range runs {
			if run.Count >= populateMin {
				s.ram.spans(run.First, run.Count, func(g *region, off, n uint64) error {
					g.populate(off, n, true)
					return nil
				})
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.Seq != r.next || (r.cm != nil && r.runFrames >= r.cm.runs) {
		return fmt.Errorf("%w: RUNS frame of batch %d, expected batch %d", transport.ErrProtocol, f.Seq, r.next)
	}
	// The source commits a batch before its data runs would name more
	// pages than guest RAM has (sendPages): this bounds what the batch
	// may count, and the runs kept here.
	if r.runPages+n > s.ram.Pages {
		return fmt.Errorf("%w: RUNS of batch %d name %d data pages, guest RAM has %d", transport.ErrProtocol, f.Seq, r.runPages+n, s.ram.Pages)
	}
	r.runs, r.runPages = append(r.runs, runs...), r.runPages+n
	r.runFrames++
	r.frameEnd = append(r.frameEnd, len(r.runs))
	s.recount()
	s.reportMarked()
	return s.ackIfDone()
}

// marked records a MARK: the data runs of the batch's first cm.runs RUNS
// frames are in guest RAM; it answers MARKED.
func (s *session) marked(cm commit) error {
	r := &s.rcv
	r.mu.Lock()
	defer r.mu.Unlock()
	if cm.seq != r.next || r.cm != nil || cm.runs < r.markFrames || cm.zeros != 0 || cm.pages != 0 {
		return fmt.Errorf("%w: MARK of batch %d (%d frames), expected batch %d", transport.ErrProtocol, cm.seq, cm.runs, r.next)
	}
	r.markFrames = cm.runs
	s.reportMarked()
	seq := cm.seq
	s.wg.Go(func() {
		if err := s.writeFrame(context.Background(), appendInternal(nil, seq, markedKind, 0)); err != nil {
			s.log.Debug("MARKED not sent", "batch", seq, "error", err)
		}
	})
	return nil
}

// applyZero zeroes the pages of run r in guest RAM (a zero run the source
// sent on the control or the urgent path).
func (s *session) applyZero(r transport.PageRun) {
	s.ram.spans(r.First, r.Count, func(g *region, off, n uint64) error {
		g.zero(off, n, s.punch)
		return nil
	})
	s.stats.zero.Add(r.Count)
}

// reportMarked reports to Landed the runs of the RUNS frames that both
// arrived and a MARK covered (r.mu held).
func (s *session) reportMarked() {
	r := &s.rcv
	if k := min(r.runFrames, r.markFrames); k > 0 {
		for _, run := range r.runs[r.reported:r.frameEnd[k-1]] {
			s.Landed.Push(run)
		}
		r.reported = max(r.reported, r.frameEnd[k-1])
	}
}

// ackIfDone acknowledges the batch once its COMMIT arrived and all its
// zero frames were applied (r.mu held).
func (s *session) ackIfDone() error {
	r := &s.rcv
	if r.cm == nil || r.zeros < r.cm.zeros || r.runFrames < r.cm.runs {
		return nil
	}
	if r.runPages != r.cm.pages {
		return fmt.Errorf("%w: batch %d: COMMIT of %d data pages, RUNS of %d", transport.ErrProtocol, r.cm.seq, r.cm.pages, r.runPages)
	}
	for _, run := range r.runs[r.reported:] {
		s.Landed.Push(run)
	}
	seq := r.cm.seq
	r.next, r.cm, r.zeros = seq+1, nil, 0
	r.runFrames, r.runPages, r.runs = 0, 0, r.runs[:0]
	r.frameEnd, r.markFrames, r.reported, r.progress, r.counted = r.frameEnd[:0], 0, 0, 0, 0
	s.wg.Go(func() { // the ACK goes out of the reader's way
		if err := s.writeFrame(context.Background(), wire.AppendAck(nil, seq)); err != nil {
			s.log.Debug("ACK not sent", "batch", seq, "error", err)
		}
	})
	return nil
}
