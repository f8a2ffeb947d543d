package vmtest_test

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
)

// TestEmbedPostcopyPortSquatted (transport API 7; docs/POSTCOPY.md, "What
// it cannot do yet"): a local user of the destination host tries to take
// the destination's listening port from the moment post-copy starts,
// every millisecond, and so also while both sides reconnect after one
// side's TCP plugin process is killed (the destination stops its plugin
// process then and starts a new one, which listens again), twice: the
// second time once the destination resumed, so that the process then
// stopped is one the destination's host handed the port to. No bind may
// work: the port stays the migration's until the destination is done,
// and the migration completes page-exact after both reconnects.
//
// Until a66e234 the port was free from the source's connect on: the
// squatter took it, the destination's new process could not listen, and
// the source reconnected to the squatter until reconnect_timeout, after
// which the guest was lost.
func TestEmbedPostcopyPortSquatted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes and kills them in post-copy")
	}
	for _, side := range []int{0, 1} {
		t.Run([]string{"source", "destination"}[side], func(t *testing.T) {
			var sq *squatter
			var killed atomic.Int32
			_, srep, drep := manualSwitch(t, func(sspec, dspec *session.Spec) {
				linkDstPlugin(t, dspec) // killTransport tells the two sides' processes apart by name
				sq = newSquatter(t, dspec.Transport.Config["listen"].(string))
				dspec.Progress = cutAndSquat(t, sq, side, &killed)
			})
			sq.stop()
			t.Logf("killed %d transport process(es) of side %d; source %d reconnects, destination %d",
				killed.Load(), side, srep.Reconnects, drep.Reconnects)
			if killed.Load() < cuts || drep.Reconnects < cuts {
				t.Fatalf("the destination reconnected %d times, want %d: a cut came too late to test the port across it", drep.Reconnects, cuts)
			}
			if sq.duringReconnect == 0 {
				t.Error("the squatter never tried while the destination reconnected")
			}
		})
	}
}

// cuts is how many times a test kills a transport plugin process: the
// process the second reconnect stops is one the destination's host
// handed the port to, and the host must still hold it once that process
// is gone.
const cuts = 2

// cutAndSquat is the destination's progress callback: once post-copy
// runs there, sq starts trying, and killCuts kills side's transport
// process (0: the source's, 1: the destination's); the test joins it in
// a cleanup. Progress is reported from more than one goroutine.
func cutAndSquat(t *testing.T, sq *squatter, side int, killed *atomic.Int32) func(engine.Progress) {
	var once, over sync.Once
	var cut sync.WaitGroup
	t.Cleanup(cut.Wait)
	resumed, done := make(chan struct{}, 1), make(chan struct{})
	return func(p engine.Progress) {
		switch ended := sq.observe(p); {
		case p.Phase == engine.PhaseDone:
			over.Do(func() { close(done) })
		case ended:
			select {
			case resumed <- struct{}{}:
			default:
			}
		}
		if p.Phase == engine.PhasePostcopy {
			once.Do(func() {
				sq.start()
				cut.Go(func() { killCuts(t, side, resumed, done, killed) })
			})
		}
	}
}

// killCuts kills side's transport process 100 ms into post-copy (it is
// capped: it lasts about a second), and again each time the destination
// resumed after a reconnect, cuts times in all, adding to killed. It
// stops early once the destination is done, or after 10 s without a
// resume.
func killCuts(t *testing.T, side int, resumed, done <-chan struct{}, killed *atomic.Int32) {
	time.Sleep(100 * time.Millisecond)
	for i := range cuts {
		if i > 0 {
			select {
			case <-resumed:
			case <-done:
				return
			case <-time.After(10 * time.Second):
				return
			}
		}
		killed.Add(int32(killTransport(t, side)))
	}
}

// squatter is a local user of the destination host: from start until the
// destination reports that it is done (or stop), it tries every
// millisecond to bind the destination's listening address and the
// wildcard address of the same port, as anyone on the host may bind a
// free port. A bind that works is kept, as a user who meant harm would
// keep it, until stop. Its cleanup (registered by newSquatter) fails the
// test if one worked before the destination was done.
type squatter struct {
	addrs []string // the destination's address, then the port on every address
	quit  chan struct{}
	done  chan struct{}
	begun sync.Once
	ended sync.Once

	over         atomic.Bool // the destination reported PhaseDone: the port is free by right
	reconnecting atomic.Bool // the destination reports a reconnect under way

	// Written by run, read after done.
	tries, duringReconnect int
	took                   net.Listener // the bind that worked before the destination was done
	tookAt                 int          // the try that bound it
	odd                    []error      // failed binds that failed otherwise than EADDRINUSE
}

// squatTries bounds the squatter's loop: 30 s of tries at 1 ms.
const squatTries = 30000

// newSquatter returns an idle squatter on listen (the destination's
// "listen" address, host:port).
func newSquatter(t *testing.T, listen string) *squatter {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	sq := &squatter{addrs: []string{listen, net.JoinHostPort("", port)}, quit: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { sq.stop(); sq.check(t) })
	return sq
}

// observe follows the destination's progress; it says whether p ends a
// reconnect (post-copy resumed).
func (sq *squatter) observe(p engine.Progress) (resumed bool) {
	switch p.Phase {
	case engine.PhaseDone:
		sq.over.Store(true)
	case engine.PhasePostcopy:
		return sq.reconnecting.Swap(p.Reconnecting > 0) && p.Reconnecting == 0
	}
	return false
}

// start starts trying, once.
func (sq *squatter) start() { sq.begun.Do(func() { go sq.run() }) }

// stop stops trying and lets go of a port it took; safe to call again,
// and before start.
func (sq *squatter) stop() {
	sq.begun.Do(func() { close(sq.done) }) // never started: nothing to wait for
	sq.ended.Do(func() {
		close(sq.quit)
		<-sq.done
		if sq.took != nil {
			sq.took.Close()
		}
	})
}

// run tries until the destination is done, stop, a bind works, or
// squatTries.
func (sq *squatter) run() {
	defer close(sq.done)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sq.tries < squatTries && !sq.over.Load() {
		addr := sq.addrs[sq.tries%len(sq.addrs)]
		during := sq.reconnecting.Load()
		ln, err := net.Listen("tcp", addr)
		sq.tries++
		if during {
			sq.duringReconnect++
		}
		switch {
		case err == nil && sq.over.Load():
			ln.Close() // the session let the port go as it ended
			return
		case err == nil:
			sq.took, sq.tookAt = ln, sq.tries
			return
		case !errors.Is(err, syscall.EADDRINUSE) && len(sq.odd) < 10:
			sq.odd = append(sq.odd, err)
		}
		select {
		case <-tick.C:
		case <-sq.quit:
			return
		}
	}
}

// check fails t if a bind worked before the destination was done, or
// failed for another reason than the port being in use; run has ended.
func (sq *squatter) check(t *testing.T) {
	t.Logf("squatter: %d binds tried on %v, %d while the destination reconnected", sq.tries, sq.addrs, sq.duringReconnect)
	if sq.took != nil {
		t.Errorf("a local user bound %s while the migration ran (try %d): the destination's port was free in post-copy",
			sq.took.Addr(), sq.tookAt)
	}
	for _, err := range sq.odd {
		t.Errorf("squatter: %v, want the address in use", err)
	}
}
