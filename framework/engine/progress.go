package engine

import (
	"context"
	"errors"
	"fmt"
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

// statsTimeout bounds one Stats call the engine waits for: a hung
// plugin costs the figure, not the migration. The poller's own calls
// (and a stall watch's counts) run on their own goroutines and may take
// longer: a slow plugin's late answer still tells that it is not
// stopped (selfStopped).
const statsTimeout = time.Second

// statsPoller keeps the transport's last counters. Its methods may be
// called from any goroutine.
type statsPoller struct {
	tr   transport.Transport
	mu   sync.Mutex
	last transport.Stats
	err  error // of the last call: nil if it answered
	// fresh: a call answered since the last answer; asking: when the
	// poller's call in flight began (zero: none).
	fresh  bool
	asking time.Time
	stop   context.CancelFunc
	done   chan struct{}
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
			p.ask(ctx)
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
	return p.keep(p.tr.Stats(ctx))
}

// ask is the poller's own call: bounded by ctx only, so that a slow
// plugin's answer arrives (answer tells it from none).
func (p *statsPoller) ask(ctx context.Context) {
	p.mu.Lock()
	p.asking = time.Now()
	p.mu.Unlock()
	p.keep(p.tr.Stats(ctx))
}

// keep records a call's outcome and returns the last counters.
func (p *statsPoller) keep(st transport.Stats, err error) transport.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asking = time.Time{}
	if p.err = err; err == nil {
		p.last, p.fresh = st, true
	}
	return p.last
}

// answer is get, with nil if the transport answered a call since the
// last answer (the counters are that call's), else why not: the
// poller's call in flight has waited so long, or the last call failed,
// or errNoNews (nothing new was asked yet). A stall watch counts with
// it (sender.watchPeer): no nil answer for the whole StallTimeout is a
// plugin that does not answer (selfStopped).
func (p *statsPoller) answer() (transport.Stats, error) {
	if p == nil {
		return transport.Stats{}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.fresh:
		p.fresh = false
		return p.last, nil
	case !p.asking.IsZero():
		return p.last, fmt.Errorf("no answer to a Stats call for %v", time.Since(p.asking).Round(time.Millisecond))
	case p.err != nil:
		return p.last, p.err
	}
	return p.last, errNoNews
}

// errNoNews: no Stats call answered since the last look, and none is
// asked now (statsPoller.answer).
var errNoNews = errors.New("no Stats call answered since the last look")

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
