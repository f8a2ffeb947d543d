package rdma

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// queue is one of the source's endpoints (bulk or urgent) as the paths
// post to it: the operations posted and not yet completed, at most maxIn.
type queue struct {
	name     string // in errors: "" (bulk) or "urgent endpoint: "
	maxIn    int64
	inflight atomic.Int64 // writes and COMMITs posted, not completed
	progress chan struct{}

	commitEarly bool           // tests only: each COMMIT before its writes (must be caught)
	deferred    []func() error // commitEarly: the writes held back
}

func (q *queue) init(name string, c fabric.Caps) {
	q.name = name
	q.maxIn = int64(min(max(c.TxSize-1, 1), 64))
	q.progress = make(chan struct{}, 1)
}

// postOn posts one operation on q, waiting for room.
func (s *session) postOn(ctx context.Context, q *queue, op func() error) error {
	for {
		if q.inflight.Load() < q.maxIn {
			q.inflight.Add(1)
			err := op()
			if err == nil {
				return nil
			}
			q.inflight.Add(-1)
			if err != fabric.ErrAgain {
				s.fail(fmt.Errorf("fabric: %s%w: %w", q.name, err, transport.ErrClosed), wire.CodeFailed)
				return s.error()
			}
		}
		if err := s.waitOn(ctx, q); err != nil {
			return err
		}
	}
}

// waitOn waits for a completion on q (or 5ms), the session's end or ctx.
func (s *session) waitOn(ctx context.Context, q *queue) error {
	t := time.NewTimer(5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-q.progress:
	case <-t.C:
	case <-s.done:
		return s.error()
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// postWrites posts on q the writes of data run r, straight from guest
// RAM into the destination's, in pieces of at most writeChunk (held back
// in q.deferred with commitEarly); write makes the operation that writes
// chunk at byte offset at of region g. pages, if not nil, counts the
// data pages posted.
func (s *session) postWrites(ctx context.Context, q *queue, r transport.PageRun, pages *uint64,
	write func(g *region, chunk []byte, at uint64) func() error) error {
	return s.ram.spans(r.First, r.Count, func(g *region, off, n uint64) error {
		for b := off * pageSize; b < (off+n)*pageSize; b += writeChunk {
			chunk := g.mem[b:min(b+writeChunk, (off+n)*pageSize)]
			op := write(g, chunk, b)
			if q.commitEarly {
				q.deferred = append(q.deferred, op)
			} else if err := s.postOn(ctx, q, op); err != nil {
				return err
			}
			s.stats.wire.Add(uint64(len(chunk)))
		}
		if pages != nil {
			*pages += n
		}
		s.stats.data.Add(n)
		return nil
	})
}
