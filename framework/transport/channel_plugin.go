package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc/status"
)

// chanServer is the plugin's end of the urgent channel: it runs the
// host's SendUrgent and SendPagesUrgent calls on impl one at a time (the
// urgent sender lane), and while the host holds credit it pushes what
// impl's RecvUrgent and Landed return (one pump goroutine per lane and
// session, the lane's only caller), or, when impl is a Pusher, what impl
// pushes (a pushLane per lane and session, written by impl's goroutines).
type chanServer struct {
	impl       Transport
	pusher     Pusher // impl, if it pushes
	chanWriter        // and its conn, the channel

	calls chan chanFrame // fSend and fSendPages, in order, to the sender

	mu        sync.Mutex
	session   uint64              // the current session's tag (Open), 0 after Close
	stop      context.CancelFunc  // ends the current session's pumps
	sctx      context.Context     // the current session's pumps' context
	pumps     [numLanes]*pump     // the current session's, started by its first credit
	pushes    [numLanes]*pushLane // the same, when impl pushes
	lanes     [numLanes]sync.Mutex
	running   uint64             // the id of the call in impl, 0: none
	cancelRun context.CancelFunc // cancels it
	cancelled map[uint64]bool    // calls the host gave up before they started
	owed      *Owed              // the current session's, once Answer armed it
}

// pump is one lane's pusher in one session.
type pump struct {
	mu     sync.Mutex
	credit uint64
	more   chan struct{} // a credit arrived
}

func newChanServer(impl Transport, conn *net.UnixConn) *chanServer {
	s := &chanServer{impl: impl, chanWriter: chanWriter{conn: conn}, calls: make(chan chanFrame, 4), cancelled: map[uint64]bool{}}
	s.pusher, _ = impl.(Pusher)
	s.sctx, s.stop = context.WithCancel(context.Background())
	s.stop()
	return s
}

// serve reads the host's frames until the channel ends (the host is
// gone, or it broke the format: the plugin then serves no urgent path
// any more, and the host sees the channel end).
func (s *chanServer) serve() {
	defer s.conn.Close()
	go s.sender()
	defer close(s.calls)
	fr := newFDReader(s.conn)
	defer fr.close()
	r := newChanReader(fr)
	for {
		f, err := r.next()
		if err == nil && f.Type == fAnswer {
			if f.File = fr.file(); f.File == nil {
				err = fmt.Errorf("%w: urgent channel: an Answer call without its file", ErrProtocol)
			}
		}
		if err != nil { // the host is gone or broke the format: end everything
			s.mu.Lock()
			s.endSession()
			if s.cancelRun != nil {
				s.cancelRun()
			}
			s.mu.Unlock()
			return
		}
		switch f.Type {
		case fSend, fSendPages, fAnswer:
			s.calls <- f
		case fCancel:
			s.mu.Lock()
			if s.running == f.Tag {
				s.cancelRun()
			} else {
				s.cancelled[f.Tag] = true
			}
			s.mu.Unlock()
		case fCredit:
			s.credit(f)
		}
	}
}

// sender runs the host's calls in order, each with a context the host
// can cancel, and answers each with fReply.
func (s *chanServer) sender() {
	for f := range s.calls {
		ctx, cancel := context.WithCancel(context.Background())
		s.mu.Lock()
		for id := range s.cancelled {
			if id == f.Tag {
				cancel()
			}
			if id <= f.Tag { // ids grow: a cancel of an earlier call came after its reply
				delete(s.cancelled, id)
			}
		}
		s.running, s.cancelRun = f.Tag, cancel
		s.mu.Unlock()
		var err error
		switch f.Type {
		case fSend:
			err = s.impl.SendUrgent(ctx, f.Msg)
		case fSendPages:
			err = s.impl.SendPagesUrgent(ctx, f.Runs)
		case fAnswer:
			err = s.answer(ctx, f)
		}
		s.mu.Lock()
		s.running, s.cancelRun = 0, nil
		s.mu.Unlock()
		cancel()
		code, text := statusOf(err)
		s.write(chanFrame{Type: fReply, Tag: f.Tag, Code: code, Text: text})
	}
}

// answer maps the owed set the host sent and arms impl's Answerer with
// it for the current session; the set is closed when the session ends.
func (s *chanServer) answer(ctx context.Context, f chanFrame) error {
	a, ok := s.impl.(Answerer)
	if !ok {
		f.File.Close()
		return fmt.Errorf("%w: this transport does not answer page requests itself", ErrNotSupported)
	}
	owed, err := MapOwed(f.File, f.Pages)
	if err != nil {
		f.File.Close()
		return err
	}
	s.mu.Lock()
	if s.session == 0 {
		s.mu.Unlock()
		owed.Close()
		return fmt.Errorf("%w: Answer without an open session", ErrClosed)
	}
	if s.owed != nil {
		s.owed.Close()
	}
	s.owed = owed
	s.mu.Unlock()
	return a.Answer(ctx, f.Msg.Kind, owed)
}

// statusOf is err as the channel carries it: its class's status code
// and its text; 0 and "" for nil.
func statusOf(err error) (uint32, string) {
	if err == nil {
		return 0, ""
	}
	st := status.Convert(classes.ToStatus(err))
	return uint32(st.Code()), st.Message()
}

// credit grants pushes on a lane of the current session, starting its
// pump on the first grant; credit for another session is stale.
func (s *chanServer) credit(f chanFrame) {
	s.mu.Lock()
	if f.Tag != s.session || s.sctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	if s.pusher != nil && s.pumps[f.Lane] == nil {
		if pl := s.pushing(f.Lane); pl != nil {
			s.mu.Unlock()
			pl.mu.Lock()
			pl.credit += uint64(f.N)
			s.flush(pl) // outside s.mu: writes what waited for this credit
			return
		}
	}
	defer s.mu.Unlock()
	p := s.pumps[f.Lane]
	if p == nil {
		p = &pump{more: make(chan struct{}, 1)}
		s.pumps[f.Lane] = p
		go s.pump(s.sctx, s.session, f.Lane, p)
	}
	p.mu.Lock()
	p.credit += uint64(f.N)
	p.mu.Unlock()
	select {
	case p.more <- struct{}{}:
	default:
	}
}

// pump pushes what impl returns on lane for session, one push per
// credit, until the session ends (ctx) or impl returns an error, which
// it pushes as fEnd. It holds the lane, so a pump of an earlier session
// has returned before this one calls impl.
func (s *chanServer) pump(ctx context.Context, session uint64, lane chanLane, p *pump) {
	s.lanes[lane].Lock()
	defer s.lanes[lane].Unlock()
	for {
		for {
			p.mu.Lock()
			ok := p.credit > 0
			p.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-p.more:
			case <-ctx.Done():
				return
			}
		}
		f := chanFrame{Tag: session}
		var err error
		if lane == laneUrgent {
			f.Type = fUrgent
			f.Msg, err = s.impl.RecvUrgent(ctx)
			if err == nil && len(f.Msg.Payload) > MaxMessage {
				err = errors.New("the transport returned an urgent message over transport.MaxMessage")
			}
		} else {
			f.Type = fLanded
			f.Runs, err = s.impl.Landed(ctx)
			if err == nil && len(f.Runs) > MaxLanded {
				err = errors.New("the transport returned more than transport.MaxLanded landed runs")
			}
		}
		if ctx.Err() != nil {
			return // the session is over: nobody waits for this lane
		}
		if err != nil {
			code, text := statusOf(err)
			s.write(chanFrame{Type: fEnd, Tag: session, Lane: lane, Code: code, Text: text})
			return
		}
		p.mu.Lock()
		p.credit--
		p.mu.Unlock()
		if s.write(f) != nil {
			return
		}
	}
}

// open starts session (Open, before impl.Open): pushes of earlier
// sessions stop, and credits for session start its pumps.
func (s *chanServer) open(session uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endSession()
	s.sctx, s.stop = context.WithCancel(context.Background())
	s.session = session
}

// close ends the current session's pumps (Close, before impl.Close).
func (s *chanServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endSession()
	s.session = 0
}

// endSession stops the current session's pumps and pushes (call with
// s.mu held): nothing more of it reaches the host.
func (s *chanServer) endSession() {
	s.stop()
	for _, pl := range s.pushes {
		if pl != nil {
			pl.mu.Lock()
			pl.closed, pl.backlog = true, nil
			pl.mu.Unlock()
		}
	}
	s.pumps, s.pushes = [numLanes]*pump{}, [numLanes]*pushLane{}
	if s.owed != nil { // impl may still hold it: a closed set is empty
		s.owed.Close()
		s.owed = nil
	}
}

// Limits on urgent messages a pushing transport handed over while the
// host held no credit, as inbox's on a transport's own queue: past them
// the peer is flooding and the transport fails the session.
const (
	pushMaxMsgs  = 4096
	pushMaxBytes = 64 << 20
)

// pushLane is one lane of one session when impl pushes (Pusher): what
// impl hands over waits in backlog, oldest first, until credit lets it
// go, and whichever goroutine finds the lane idle (impl's, handing over;
// serve's, granting credit) writes what may go. So an arrival on an idle
// lane with credit is written by the goroutine that received it: no
// other thread of the plugin wakes for it.
type pushLane struct {
	mu      sync.Mutex
	lane    chanLane
	session uint64
	credit  uint64
	backlog []chanFrame // fUrgent, fLanded (runs merged), fEnd last
	bytes   int         // urgent payload bytes in backlog
	writing bool        // a goroutine is writing the backlog
	closed  bool        // the session is over here: drop everything
}

// pushing is lane's pushLane in the current session when impl pushes
// it, armed on the first call (call with s.mu held: impl's sinks take
// nothing from the lane until the caller grants it credit). It is nil,
// arming nothing, when impl does not push this lane (ErrNotSupported):
// the lane's pump then calls impl.
func (s *chanServer) pushing(lane chanLane) *pushLane {
	if pl := s.pushes[lane]; pl != nil {
		return pl
	}
	pl := &pushLane{lane: lane, session: s.session}
	var err error
	if lane == laneUrgent {
		err = s.pusher.PushUrgent(func(m Message) error { return s.pushUrgent(pl, m) }, func(err error) { s.pushEnd(pl, err) })
	} else {
		err = s.pusher.PushLanded(func(runs []PageRun) { s.pushLanded(pl, runs) }, func(err error) { s.pushEnd(pl, err) })
	}
	if errors.Is(err, ErrNotSupported) {
		return nil
	}
	s.pushes[lane] = pl
	if err != nil {
		s.pushEnd(pl, err)
	}
	return pl
}

// pushUrgent is impl's urgent sink.
func (s *chanServer) pushUrgent(pl *pushLane, m Message) error {
	if len(m.Payload) > MaxMessage {
		return fmt.Errorf("%w: an urgent message over transport.MaxMessage", ErrProtocol)
	}
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return nil
	}
	if len(pl.backlog) >= pushMaxMsgs || pl.bytes+len(m.Payload) > pushMaxBytes {
		pl.mu.Unlock()
		return fmt.Errorf("%w: the peer sent more than %d urgent messages or %d bytes that the host did not take",
			ErrProtocol, pushMaxMsgs, pushMaxBytes)
	}
	pl.backlog = append(pl.backlog, chanFrame{Type: fUrgent, Tag: pl.session, Msg: m})
	pl.bytes += len(m.Payload)
	s.flush(pl)
	return nil
}

// pushLanded is impl's landed sink: runs join the last waiting frame
// while it has room.
func (s *chanServer) pushLanded(pl *pushLane, runs []PageRun) {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	for _, r := range runs {
		n := len(pl.backlog)
		if n == 0 || pl.backlog[n-1].Type != fLanded || len(pl.backlog[n-1].Runs) >= MaxLanded {
			pl.backlog = append(pl.backlog, chanFrame{Type: fLanded, Tag: pl.session})
			n++
		}
		last := &pl.backlog[n-1]
		if k := len(last.Runs); k > 0 && last.Runs[k-1].Kind == r.Kind && last.Runs[k-1].First+last.Runs[k-1].Count == r.First {
			last.Runs[k-1].Count += r.Count
		} else {
			last.Runs = append(last.Runs, r)
		}
	}
	s.flush(pl)
}

// pushEnd is impl's end of the lane's session: fEnd goes after what
// waits, without credit, as the pump's does.
func (s *chanServer) pushEnd(pl *pushLane, err error) {
	code, text := statusOf(err)
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	pl.backlog = append(pl.backlog, chanFrame{Type: fEnd, Tag: pl.session, Lane: pl.lane, Code: code, Text: text})
	s.flush(pl)
}

// flush writes the lane's backlog while credit allows, unless another
// goroutine is at it (it will write what was just added). Call with
// pl.mu held; it returns with pl.mu released.
func (s *chanServer) flush(pl *pushLane) {
	if pl.writing {
		pl.mu.Unlock()
		return
	}
	pl.writing = true
	for !pl.closed && len(pl.backlog) > 0 && (pl.credit > 0 || pl.backlog[0].Type == fEnd) {
		f := pl.backlog[0]
		pl.backlog[0] = chanFrame{}
		pl.backlog = pl.backlog[1:]
		if f.Type != fEnd {
			pl.credit--
		}
		pl.bytes -= len(f.Msg.Payload)
		pl.mu.Unlock()
		err := s.write(f)
		pl.mu.Lock()
		if err != nil || f.Type == fEnd {
			pl.closed, pl.backlog = true, nil // the channel broke (serve ends all) or the lane did
		}
	}
	pl.writing = false
	pl.mu.Unlock()
}
