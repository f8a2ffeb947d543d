package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// statsRun migrates mib MiB of data pages with the poller's interval set
// to every, each batch taking pause, and counts.
type statsRun struct {
	batches, calls, events int64
	passes                 int
	elapsed                time.Duration
	lastBytes              uint64
}

func runStats(t *testing.T, size uint64, every, pause time.Duration) statsRun {
	t.Helper()
	withStatsInterval(t, every)
	layout := [2]uint64{0, size}
	src, dst := newFakeVM(t, layout), newFakeVM(t, layout)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x21) // every page is data: a batch per 8 MiB
	}
	var batches, events atomic.Int64
	var lastBytes atomic.Uint64
	var pp *pipe
	// The stall watches count too, every StallTimeout/8: an hour keeps
	// them out of what a loaded machine's slow run counts.
	opt := Options{MaxPasses: 2, StallTimeout: time.Hour, Progress: func(p Progress) {
		events.Add(1)
		lastBytes.Store(p.BytesWire)
	}}
	start := time.Now()
	srep, serr, _, rerr := migrate(t, src, dst, opt, func(p *pipe) {
		pp = p
		p.failPages = func([]transport.PageRun) error {
			batches.Add(1)
			time.Sleep(pause)
			return nil
		}
	})
	r := statsRun{batches: batches.Load(), calls: pp.statsCalls.Load(), events: events.Load(), passes: srep.Passes,
		elapsed: time.Since(start), lastBytes: lastBytes.Load()}
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	time.Sleep(min(3*every, 200*time.Millisecond))
	if after := pp.statsCalls.Load(); after != r.calls {
		t.Errorf("Stats called %d times after Send and Receive returned: the poller was not joined", after-r.calls)
	}
	t.Logf("%+v", r)
	return r
}

// TestStatsNotPerBatch: without ticks, the transport's counters are asked
// for once per live pass and once at the end of each side, whatever the
// number of batches; progress events are bounded the same way.
func TestStatsNotPerBatch(t *testing.T) {
	r := runStats(t, 128*mib, time.Hour, 0)
	bound := int64(r.passes) + 2 // live passes, the sender's last count, the receiver's
	if r.batches < 3*bound {
		t.Fatalf("only %d batches for a bound of %d: the test proves nothing", r.batches, bound)
	}
	if r.calls > bound {
		t.Errorf("%d Stats calls for %d batches: want at most %d", r.calls, r.batches, bound)
	}
	// Per phase change and per pass on the source, per phase on the destination.
	if r.events > 2*int64(r.passes)+10 {
		t.Errorf("%d progress events for %d batches", r.events, r.batches)
	}
	if r.lastBytes == 0 {
		t.Error("the last progress event has no bytes on the wire")
	}
}

// TestStatsOnTimer: the poller ticks while batches are slow, and no
// more often than its interval.
func TestStatsOnTimer(t *testing.T) {
	every := 20 * time.Millisecond
	r := runStats(t, 32*mib, every, 30*time.Millisecond)
	fixed := int64(r.passes) + 2
	if r.calls <= fixed {
		t.Errorf("%d Stats calls in %v: the ticker never ticked", r.calls, r.elapsed)
	}
	if max := int64(r.elapsed/every) + 1 + fixed; r.calls > max {
		t.Errorf("%d Stats calls in %v: want at most %d", r.calls, r.elapsed, max)
	}
}

// TestProgressDuringFlush: a Flush that takes a while (a transport still
// writing what a pass queued behind a slow link) reports progress on the
// timer, with the rate the transport writes at, instead of standing
// still until it returns.
func TestProgressDuringFlush(t *testing.T) {
	withStatsInterval(t, 20*time.Millisecond)
	layout := [2]uint64{0, 16 * mib}
	src, dst := newFakeVM(t, layout), newFakeVM(t, layout)
	for p := uint64(0); p < src.layout.Pages(); p++ {
		src.write(p, 0x21)
	}
	var inFlush atomic.Bool
	var during, moving atomic.Int64 // events while a Flush waits; those with a rate
	opt := Options{MaxPasses: 1, Progress: func(p Progress) {
		if inFlush.Load() && p.Phase == PhaseBulk {
			during.Add(1)
			if p.Throughput > 0 {
				moving.Add(1)
			}
		}
	}}
	_, serr, _, rerr := migrate(t, src, dst, opt, func(p *pipe) {
		var once sync.Once
		p.slowFlush = func() {
			once.Do(func() { // the bulk pass's Flush: 300 ms of writing, more if the poller runs late
				inFlush.Store(true)
				defer inFlush.Store(false)
				for i := 0; i < 15 || ((during.Load() < 3 || moving.Load() == 0) && i < 500); i++ {
					time.Sleep(20 * time.Millisecond)
					p.mu.Lock()
					p.stats.PagesData += 100
					p.mu.Unlock()
				}
			})
		}
	})
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if during.Load() < 3 || moving.Load() == 0 {
		t.Errorf("%d progress events during a Flush of 300 ms to 10 s, %d with a rate: want several, with the transport's rate", during.Load(), moving.Load())
	}
}

// withStatsInterval sets statsInterval to d for the test.
func withStatsInterval(t testing.TB, d time.Duration) {
	old := statsInterval
	statsInterval = d
	t.Cleanup(func() { statsInterval = old })
}
