package vmtest_test

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
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
func TestEmbedPrecopyPluginStopped(t *testing.T) {
	const selfStopped = "this side's transport plugin stopped answering"
	for _, side := range []int{0, 1} {
		t.Run([]string{"source", "destination"}[side], func(t *testing.T) {
			src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
			dst := newVM(t, vmtest.Options{Incoming: true})
			sspec, dspec := postcopyCutSpecs(t) // pre-copy, the bulk pass capped at 8 MiB/s
			sspec.Engine.StallTimeout, dspec.Engine.StallTimeout = 2*time.Second, 2*time.Second
			name := map[int]string{0: "ferry-transport-tcp", 1: dstPluginName}[side]
			var once sync.Once
			stopped := make(chan int, 1)
			sspec.Progress = func(p engine.Progress) {
				if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
					once.Do(func() { go func() { stopped <- plugintest.SignalChildren(t, name, syscall.SIGSTOP) }() })
				}
			}
			start := time.Now()
			srep, serr, drep, derr := run(src, dst, sspec, dspec)
			took := time.Since(start)
			plugintest.SignalChildren(t, name, syscall.SIGCONT) // any left: let them end
			var n int
			select {
			case n = <-stopped:
			default:
			}
			t.Logf("after %v: source %s: %v\ndestination %s: %v", took.Round(time.Millisecond), srep.Status, serr, drep.Status, derr)
			if n == 0 {
				t.Fatal("no plugin process was stopped: did the bulk pass end before 256 pages?")
			}
			if srep.Status != engine.StatusFailed || drep.Status != engine.StatusFailed {
				t.Fatalf("source %s, destination %s; want both failed", srep.Status, drep.Status)
			}
			// The side whose plugin stopped may fail on a Close that waits
			// on it; the other one must name the stall, and blame its peer.
			// The stopped side's stall (its plugin does not answer Stats
			// either) must blame that plugin, not the peer.
			other, oerr := map[int]string{0: "destination", 1: "source"}[side], map[int]error{0: derr, 1: serr}[side]
			if oerr == nil || !strings.Contains(oerr.Error(), "stalled") || strings.Contains(oerr.Error(), selfStopped) {
				t.Errorf("the %s's error does not name the stall, or blames its own plugin: %v", other, oerr)
			}
			if e := map[int]error{0: serr, 1: derr}[side]; e != nil && strings.Contains(e.Error(), "stalled") && !strings.Contains(e.Error(), selfStopped) {
				t.Errorf("the %s, whose plugin stopped, blames its peer: %v", map[int]string{0: "source", 1: "destination"}[side], e)
			}
			checkSourceRuns(t, src, dst)
		})
	}
}
