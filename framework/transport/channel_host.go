package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// chanClient is the host's end of the urgent channel (channel.go): the
// urgent path of one plugin process. A reader goroutine takes the
// plugin's frames: replies go to the waiting call, pushes to their
// lane's queue.
type chanClient struct {
	proc       *errclass.Process
	chanWriter // and its conn, the channel
	// onHold takes the listening sockets the plugin hands over (fHold);
	// nil closes them.
	onHold func(name string, f *os.File)

	ids  atomic.Uint64 // call ids; 0 is none
	dead chan struct{} // closed when the reader ended
	derr error         // why, set before dead is closed

	mu      sync.Mutex
	session uint64 // the session pushes are taken for; 0: none
	waiting map[uint64]chan chanFrame
	lanes   [numLanes]hostLane
}

// hostLane is one pushed lane of the current session.
type hostLane struct {
	armed    bool          // credit granted in this session
	credit   uint32        // pushes the plugin may still send
	consumed uint32        // pushes taken since the last credit
	msgs     []Message     // laneUrgent
	runs     [][]PageRun   // laneLanded
	end      error         // the plugin's fEnd, after the queue
	note     chan struct{} // something arrived
}

// drain: a plugin process that dies leaves in the channel what it wrote
// last, and an fHold's socket is among it when it died right after
// Listen: closed with the channel, that socket's port would be free for
// anyone until the next Open binds it again. So the host reads on after
// the process is gone, until the channel's end (the process's copy
// closed with it), for at most chanDrainTime and chanDrainFrames frames:
// a descendant that kept the channel open, or one that keeps writing,
// ends it there.
const (
	chanDrainTime   = time.Second
	chanDrainFrames = 1024
)

func newChanClient(conn *net.UnixConn, proc *errclass.Process, onHold func(name string, f *os.File)) *chanClient {
	c := &chanClient{proc: proc, chanWriter: chanWriter{conn: conn}, onHold: onHold, dead: make(chan struct{}), waiting: map[uint64]chan chanFrame{}}
	for i := range c.lanes {
		c.lanes[i].note = make(chan struct{}, 1)
	}
	go c.read()
	go func() { // the process is gone: the channel ends once drained
		select {
		case <-proc.Done():
			conn.SetReadDeadline(time.Now().Add(chanDrainTime))
		case <-c.dead:
		}
	}()
	return c
}

// read takes the plugin's frames until the channel ends, or the drain
// after the process's end does (chanDrainTime).
func (c *chanClient) read() {
	fr := newFDReader(c.conn)
	defer fr.close()
	r := newChanReader(fr)
	var err error
	for late := 0; err == nil; {
		var f chanFrame
		if f, err = r.next(); err != nil {
			break
		}
		select {
		case <-c.proc.Done():
			if late++; late > chanDrainFrames {
				err = fmt.Errorf("%w: the plugin's process is gone and its channel still sends, after %d frames", ErrProtocol, chanDrainFrames)
				continue
			}
		default:
		}
		switch f.Type {
		case fHold:
			file := fr.file()
			switch {
			case file == nil:
				err = fmt.Errorf("%w: the plugin sent a held socket's frame without the socket", ErrProtocol)
			case c.onHold == nil:
				file.Close()
			default:
				c.onHold(f.Text, file)
			}
		case fReply:
			c.mu.Lock()
			ch := c.waiting[f.Tag]
			delete(c.waiting, f.Tag)
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case fUrgent, fLanded, fEnd:
			err = c.push(f)
		default:
			err = fmt.Errorf("%w: the plugin sent urgent channel frame type %d", ErrProtocol, f.Type)
		}
	}
	c.conn.Close()
	c.derr = err
	close(c.dead)
}

// drained waits, once the process is gone, until the reader took what
// the plugin wrote before it died (drain, above): every socket it handed
// over has reached onHold. It gives up a little after chanDrainTime.
func (c *chanClient) drained() {
	t := time.NewTimer(2 * chanDrainTime)
	defer t.Stop()
	select {
	case <-c.dead:
	case <-t.C:
	}
}

// push queues a pushed frame on its lane if it is of the current session.
// A push beyond the credit granted breaks the channel: the host holds no
// more than it asked for, whatever the plugin does.
func (c *chanClient) push(f chanFrame) error {
	lane := laneUrgent
	switch f.Type {
	case fLanded:
		lane = laneLanded
	case fEnd:
		lane = f.Lane
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Tag != c.session || c.session == 0 {
		return nil // an earlier session's
	}
	l := &c.lanes[lane]
	if f.Type != fEnd {
		if l.credit == 0 {
			return fmt.Errorf("%w: the plugin pushed on %s beyond the credit it was granted", ErrProtocol, lane)
		}
		l.credit--
	}
	switch f.Type {
	case fUrgent:
		l.msgs = append(l.msgs, f.Msg)
	case fLanded:
		l.runs = append(l.runs, f.Runs)
	case fEnd:
		if l.end == nil {
			l.end = c.proc.Fail(context.Background(), status.Error(codeOf(f.Code), f.Text))
		}
	}
	select {
	case l.note <- struct{}{}:
	default:
	}
	return nil
}

// codeOf is a status code from the channel, Unknown if it is none.
func codeOf(code uint32) codes.Code {
	if code == 0 || code > uint32(codes.Unauthenticated) {
		return codes.Unknown
	}
	return codes.Code(code)
}

// newSession starts taking pushes for session (Open) or none (0, Close):
// the lanes start empty and unarmed, and a call waiting in the old
// session returns.
func (c *chanClient) newSession(session uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = session
	for i := range c.lanes {
		l := &c.lanes[i]
		l.armed, l.credit, l.consumed, l.msgs, l.runs, l.end = false, 0, 0, nil, nil, nil
		select {
		case l.note <- struct{}{}:
		default:
		}
	}
}

// gone is the error of a call the channel's end cut short: werr is the
// write that failed (nil when the reader's end was seen), and the
// reader's error explains it once the reader ended.
func (c *chanClient) gone(ctx context.Context, werr error) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	why := werr
	select {
	case <-c.dead:
		why = c.derr // written before dead closed
	default: // the reader has not seen the end yet: only the write's error is known
	}
	return c.proc.Fail(ctx, status.Error(codes.Unavailable, fmt.Sprintf("urgent channel to the plugin ended: %v", why)))
}

// call runs one SendUrgent or SendPagesUrgent in the plugin and waits
// for its reply; if ctx ends first, the plugin is told to cancel it.
func (c *chanClient) call(ctx context.Context, f chanFrame) error { return c.callWith(ctx, f, nil) }

// callWith is call with file's descriptor sent along with the frame.
func (c *chanClient) callWith(ctx context.Context, f chanFrame, file *os.File) error {
	f.Tag = c.ids.Add(1)
	reply := make(chan chanFrame, 1)
	c.mu.Lock()
	c.waiting[f.Tag] = reply
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.waiting, f.Tag)
		c.mu.Unlock()
	}
	if err := c.writeWith(f, file); err != nil {
		forget()
		return c.gone(ctx, err)
	}
	select {
	case r := <-reply:
		if r.Code == 0 {
			return nil
		}
		return c.proc.Fail(ctx, status.Error(codeOf(r.Code), r.Text))
	case <-ctx.Done():
		forget()
		c.write(chanFrame{Type: fCancel, Tag: f.Tag})
		return ctx.Err()
	case <-c.dead:
		return c.gone(ctx, nil)
	}
}

// take waits for the next push on lane, granting credit as its caller
// consumes them (and the first credit of the session on the first
// call), and returns what get takes from the lane's queue.
func take[T any](ctx context.Context, c *chanClient, lane chanLane, get func(l *hostLane) (T, bool)) (T, error) {
	var zero T
	c.mu.Lock()
	first := c.session
	c.mu.Unlock()
	for {
		c.mu.Lock()
		l := &c.lanes[lane]
		session := c.session
		if session != first {
			c.mu.Unlock()
			return zero, fmt.Errorf("%w: the session ended (Close or Open) during %s", ErrClosed, lane)
		}
		var grant uint32
		if !l.armed {
			l.armed, grant = true, chanWindow
		}
		v, ok := get(l)
		if ok {
			if l.consumed++; l.consumed >= chanWindow/2 {
				grant, l.consumed = grant+l.consumed, 0
			}
		}
		l.credit += grant
		end := l.end
		c.mu.Unlock()
		if grant > 0 && session != 0 {
			if err := c.write(chanFrame{Type: fCredit, Tag: session, Lane: lane, N: grant}); err != nil && !ok {
				return zero, c.gone(ctx, err)
			}
		}
		if ok {
			return v, nil
		}
		if end != nil {
			return zero, end
		}
		if session == 0 {
			return zero, fmt.Errorf("%w: %s without an open session", ErrClosed, lane)
		}
		select {
		case <-l.note:
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-c.dead:
			return zero, c.gone(ctx, nil)
		}
	}
}

// recvUrgent implements RecvUrgent over the channel.
func (c *chanClient) recvUrgent(ctx context.Context) (Message, error) {
	return take(ctx, c, laneUrgent, func(l *hostLane) (Message, bool) {
		if len(l.msgs) == 0 {
			return Message{}, false
		}
		m := l.msgs[0]
		l.msgs = l.msgs[1:]
		return m, true
	})
}

// landed implements Landed over the channel.
func (c *chanClient) landed(ctx context.Context) ([]PageRun, error) {
	return take(ctx, c, laneLanded, func(l *hostLane) ([]PageRun, bool) {
		if len(l.runs) == 0 {
			return nil, false
		}
		r := l.runs[0]
		l.runs = l.runs[1:]
		return r, true
	})
}
