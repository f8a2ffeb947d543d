package rdma

import (
	"context"
	"net"
	"sync"
	"time"
)

// interrupter makes a setup context's end interrupt blocking I/O on the
// setup's connections (a deadline in the past), until settle: the
// moment a side decides its try succeeded, after which that context's
// end must no longer break them. context.AfterFunc alone cannot tell
// whether its deadline came after the last read, nor undo it safely
// while it may still run.
type interrupter struct {
	stop func() bool

	mu      sync.Mutex
	conns   []net.Conn
	fired   bool // ctx ended before settle: the deadlines were set
	settled bool
}

// interruptOn makes ctx's end interrupt I/O on conns until settle.
func interruptOn(ctx context.Context, conns ...net.Conn) *interrupter {
	i := &interrupter{conns: conns}
	i.stop = context.AfterFunc(ctx, func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.settled {
			return
		}
		i.fired = true
		for _, c := range i.conns {
			c.SetDeadline(time.Unix(1, 0))
		}
	})
	return i
}

// add makes ctx's end interrupt I/O on c too (at once if it ended).
func (i *interrupter) add(c net.Conn) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.conns = append(i.conns, c)
	if i.fired && !i.settled {
		c.SetDeadline(time.Unix(1, 0))
	}
}

// settle ends the interruption and reports whether ctx ended before it
// (the connections' deadlines were then set). With clear, it also
// clears those deadlines: the caller keeps the connections. Only the
// first call counts.
func (i *interrupter) settle(clear bool) (fired bool) {
	i.stop()
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.settled {
		return i.fired
	}
	i.settled = true
	if i.fired && clear {
		for _, c := range i.conns {
			c.SetDeadline(time.Time{})
		}
	}
	return i.fired
}
