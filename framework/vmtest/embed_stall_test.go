package vmtest_test

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// TestEmbedPrecopyPluginStopped: a transport plugin process that stops
// during the bulk pass (SIGSTOP: as a deadlocked plugin, or a VMM host
// that froze) keeps its connections up, so nothing breaks and nothing
// times out. Before COMMIT each side fails once nothing moved for
// StallTimeout: the source's guest runs on, intact; the destination
// never ran it. Before 2026-12-06 both sides waited until cancelled
// (here: runCtx's minute). The side whose plugin stopped says so; it
// blamed its peer before (TestPrecopyStalledSelf).
//
// The side whose plugin stopped returns (its plugins gone) within
// teardownBudget of finding the stall: it asks that plugin nothing more
// (no ABORT, no last Stats) and kills the stopped process at once. Here
// that takes about a second; the budget is for a loaded CI machine, and
// still fails the 16 s of before.
// Until 2026-12-06 it took about 16 s more: an ABORT attempt (2 s), a
// last Stats (5 s), and a Close that asked the plugin for its Stats and
// Close (5 s) and then waited killGrace (4 s) for an exit it could not
// get. Its peer then sees the connection end, and fails at once too.
func TestEmbedPrecopyPluginStopped(t *testing.T) {
	const selfStopped = "this side's transport plugin stopped answering"
	// About 1 s each here, 2 s more for the healthy side's ABORT; the
	// budgets leave room for a loaded machine.
	const teardownBudget, otherBudget = 6 * time.Second, 8 * time.Second
	for _, side := range []int{0, 1} {
		t.Run([]string{"source", "destination"}[side], func(t *testing.T) {
			src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
			dst := newVM(t, vmtest.Options{Incoming: true})
			sspec, dspec := postcopyCutSpecs(t) // pre-copy, the bulk pass capped at 8 MiB/s
			sspec.Engine.StallTimeout, dspec.Engine.StallTimeout = 2*time.Second, 2*time.Second
			// Each side's stall bound: a destination waits at least its
			// switchover_timeout too (engine recvWatched).
			bound := [2]time.Duration{2 * time.Second, max(2*time.Second, engine.DefaultSwitchoverTimeout)}
			name := map[int]string{0: "ferry-transport-tcp", 1: dstPluginName}[side]
			var once sync.Once
			type stop struct {
				n  int
				at time.Time
			}
			stopped := make(chan stop, 1)
			sspec.Progress = func(p engine.Progress) {
				if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
					once.Do(func() {
						go func() {
							n := plugintest.SignalChildren(t, name, syscall.SIGSTOP)
							stopped <- stop{n, time.Now()}
						}()
					})
				}
			}
			start := time.Now()
			r := runEnds(src, dst, sspec, dspec)
			srep, serr, drep, derr, ends := r.srep, r.serr, r.drep, r.derr, r.ends
			plugintest.SignalChildren(t, name, syscall.SIGCONT) // any left: let them end
			var st stop
			select {
			case st = <-stopped:
			default:
			}
			if st.n == 0 {
				t.Fatal("no plugin process was stopped: did the bulk pass end before 256 pages?")
			}
			took := [2]time.Duration{ends[0].Sub(st.at), ends[1].Sub(st.at)}
			t.Logf("stopped %v after the start; from the stop, the source returned after %v, the destination after %v\nsource %s: %v\ndestination %s: %v",
				st.at.Sub(start).Round(time.Millisecond), took[0].Round(time.Millisecond), took[1].Round(time.Millisecond),
				srep.Status, serr, drep.Status, derr)
			if srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
				t.Fatalf("source %s, destination %s; want both failed", srep.Status, drep.Status)
			}
			if limit := bound[side] + bound[side]/8 + teardownBudget; took[side] > limit {
				t.Errorf("the %s, whose plugin stopped, returned %v after the stop; want within %v (its stall bound, then at most %v)",
					[]string{"source", "destination"}[side], took[side].Round(time.Millisecond), limit, teardownBudget)
			}
			// The other side names the stall and blames its peer, or (its
			// peer's stopped plugin was killed first) the stream that
			// ended; never its own plugin. The stopped side's stall (its
			// plugin does not answer Stats either) must blame that plugin,
			// not the peer.
			other, oerr := map[int]string{0: "destination", 1: "source"}[side], map[int]error{0: derr, 1: serr}[side]
			if oerr == nil || !strings.Contains(oerr.Error(), "stalled") && !strings.Contains(oerr.Error(), "migration stream") ||
				strings.Contains(oerr.Error(), selfStopped) {
				t.Errorf("the %s's error does not name the stall or the stream's end, or blames its own plugin: %v", other, oerr)
			}
			if e := map[int]error{0: serr, 1: derr}[side]; e == nil || !strings.Contains(e.Error(), selfStopped) {
				t.Errorf("the %s, whose plugin stopped, does not blame it: %v", map[int]string{0: "source", 1: "destination"}[side], e)
			}
			if limit := bound[1-side] + bound[1-side]/8 + otherBudget; took[1-side] > limit {
				t.Errorf("the %s returned %v after the stop; want within %v", other, took[1-side].Round(time.Millisecond), limit)
			}
			checkSourceRuns(t, src, dst)
		})
	}
}

// ran is how runEnds's migration ended on each side.
type ran struct {
	srep, drep engine.Report
	serr, derr error
	ends       [2]time.Time // when the source's and the destination's session returned (its plugins gone)
}

// runEnds is run, with when each side returned.
func runEnds(src, dst *vmtest.VM, sspec, dspec session.Spec) (r ran) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		r.drep, r.derr = session.Receive(ctx, dst, dspec)
		r.ends[1] = time.Now()
	})
	r.srep, r.serr = session.Send(ctx, src, src, sspec)
	r.ends[0] = time.Now()
	wg.Wait()
	return r
}
