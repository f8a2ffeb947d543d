package transport

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/status"
)

// chanServer is the plugin's end of the urgent channel: it runs the
// host's SendUrgent and SendPagesUrgent calls on impl one at a time (the
// urgent sender lane), and while the host holds credit it pushes what
// impl's RecvUrgent and Landed return (one pump goroutine per lane and
// session, the lane's only caller).
type chanServer struct {
	impl       Transport
	chanWriter // and its conn, the channel

	calls chan chanFrame // fSend and fSendPages, in order, to the sender

	mu        sync.Mutex
	session   uint64             // the current session's tag (Open), 0 after Close
	stop      context.CancelFunc // ends the current session's pumps
	sctx      context.Context    // the current session's pumps' context
	pumps     [numLanes]*pump    // the current session's, started by its first credit
	lanes     [numLanes]sync.Mutex
	running   uint64             // the id of the call in impl, 0: none
	cancelRun context.CancelFunc // cancels it
	cancelled map[uint64]bool    // calls the host gave up before they started
}

// pump is one lane's pusher in one session.
type pump struct {
	mu     sync.Mutex
	credit uint64
	more   chan struct{} // a credit arrived
}

func newChanServer(impl Transport, conn *net.UnixConn) *chanServer {
	s := &chanServer{impl: impl, chanWriter: chanWriter{conn: conn}, calls: make(chan chanFrame, 4), cancelled: map[uint64]bool{}}
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
	r := newChanReader(s.conn)
	for {
		f, err := r.next()
		if err != nil { // the host is gone or broke the format: end everything
			s.mu.Lock()
			s.stop()
			if s.cancelRun != nil {
				s.cancelRun()
			}
			s.mu.Unlock()
			return
		}
		switch f.Type {
		case fSend, fSendPages:
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
		if f.Type == fSend {
			err = s.impl.SendUrgent(ctx, f.Msg)
		} else {
			err = s.impl.SendPagesUrgent(ctx, f.Runs)
		}
		s.mu.Lock()
		s.running, s.cancelRun = 0, nil
		s.mu.Unlock()
		cancel()
		code, text := statusOf(err)
		s.write(chanFrame{Type: fReply, Tag: f.Tag, Code: code, Text: text})
	}
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
	defer s.mu.Unlock()
	if f.Tag != s.session || s.sctx.Err() != nil {
		return
	}
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
	s.stop()
	s.sctx, s.stop = context.WithCancel(context.Background())
	s.session, s.pumps = session, [numLanes]*pump{}
}

// close ends the current session's pumps (Close, before impl.Close).
func (s *chanServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	s.session, s.pumps = 0, [numLanes]*pump{}
}
