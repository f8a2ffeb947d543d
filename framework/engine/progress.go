package engine

import (
	"context"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// Progress statistics on a timer. The transport's counters (bytes on
// the wire) cost a call into its plugin, so the engine asks for them on
// a ticker, at the end of every pass and at the end, never per batch;
// the send loop reads the last answer. Progress events are bounded the
// same way: at most one per statsInterval from the send loop, plus one
// per pass and per phase change.
//
//	send loop ── batch ──► progress(): last stats, ≤ 1 per statsInterval
//	          ── pass end ─► poll (Stats) + progress
//	poller goroutine ── every statsInterval ──► Stats ──► last
//	                    (started after Open, joined before Close)

// statsInterval is how often the poller asks the transport for its
// counters, and the least time between two progress events of the send
// loop. A variable for tests.
var statsInterval = 250 * time.Millisecond

// statsTimeout bounds one Stats call: a hung plugin costs the figure,
// not the migration.
const statsTimeout = time.Second

// statsPoller keeps the transport's last counters. Its methods may be
// called from any goroutine.
type statsPoller struct {
	tr   transport.Transport
	mu   sync.Mutex
	last transport.Stats
	err  error // of the last call: nil if it answered
	stop context.CancelFunc
	done chan struct{}
}

// startStats starts polling tr every statsInterval until ctx ends or
// close is called. tr must be open.
func startStats(ctx context.Context, tr transport.Transport) *statsPoller {
	ctx, stop := context.WithCancel(ctx)
	p := &statsPoller{tr: tr, stop: stop, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

func (p *statsPoller) run(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.poll(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// poll asks the transport once, within statsTimeout, and keeps the
// answer; a failed call keeps the previous one.
func (p *statsPoller) poll(ctx context.Context) transport.Stats {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	st, err := p.tr.Stats(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err = err; err == nil {
		p.last = st
	}
	return p.last
}

// answer is get, with the last call's error: nil if it answered (the
// counters are its), else why not (they are an earlier call's).
func (p *statsPoller) answer() (transport.Stats, error) {
	if p == nil {
		return transport.Stats{}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.err
}

// get returns the last counters without asking the transport; zero on
// nil.
func (p *statsPoller) get() transport.Stats {
	if p == nil {
		return transport.Stats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// close stops the poller and waits for it; safe on nil.
func (p *statsPoller) close() {
	if p == nil {
		return
	}
	p.stop()
	<-p.done
}

// reportReconnecting reports progress while a side tries to resume
// post-copy over a new connection, when nothing else does: base with
// Reconnecting (since the break, since) and Elapsed (since start)
// brought up to date at once and then every statsInterval, from its own
// goroutine. stop joins it; the caller must call it before it reports
// progress itself again.
func reportReconnecting(progress func(Progress), base Progress, start, since time.Time) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(statsInterval)
		defer t.Stop()
		for {
			now := time.Now()
			p := base
			p.Reconnecting, p.Elapsed = max(now.Sub(since), time.Nanosecond), now.Sub(start)
			p.Throughput = 0 // nothing moves meanwhile
			progress(p)
			select {
			case <-t.C:
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}
