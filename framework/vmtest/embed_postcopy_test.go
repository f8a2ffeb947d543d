package vmtest_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/postcopy"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// Post-copy through the embedding API: both sides run the real engine
// (session.Send and session.Receive) over the real TCP transport plugin,
// the destination serves its guest's faults with a real userfaultfd, the
// balloon provider's free pages travel as zero runs, and the page check
// compares every page: held ones before COMMIT, the rest as they land.

// needUffd skips when this process cannot serve post-copy faults.
func needUffd(t *testing.T) {
	t.Helper()
	if err := postcopy.Available(); err != nil {
		t.Skipf("POST-COPY NOT TESTED: userfaultfd is not available here: %v", err)
	}
}

// postcopySpecs are specs with post-copy in mode, the bulk pass capped at
// bandwidth (0: not capped) so that a switch finds pages still owed.
func postcopySpecs(t *testing.T, mode engine.PostcopyMode, bandwidth uint64) (src, dst session.Spec) {
	src, dst = specs(t, true)
	src.Engine.Postcopy = mode
	src.Engine.Bandwidth = bandwidth
	src.Engine.ReconnectTimeout = 20 * time.Second
	dst.Engine.ReconnectTimeout = 20 * time.Second
	return src, dst
}

// toucher reads every free page of dst, and then every page, from its
// own goroutine once dst runs, as a device model would (through the
// engine's Toucher while post-copy runs): free pages fault locally, the
// others may go over the network.
func toucher(dst **vmtest.VM, free func() []uint64) (onResume func(), wait func()) {
	var wg sync.WaitGroup
	onResume = func() {
		wg.Go(func() {
			v := *dst
			for _, p := range free() {
				v.Page(p)
			}
			for p := range v.Pages() {
				v.Page(p)
			}
		})
	}
	return onResume, wg.Wait
}

// checkPostcopy asserts a completed post-copy: both sides completed in
// post-copy, the destination runs a guest whose every page is its own,
// free pages arrived as zeros, the source is paused for good.
func checkPostcopy(t *testing.T, src, dst *vmtest.VM, srep, drep engine.Report, serr, derr error) {
	t.Helper()
	t.Logf("source: %s %v, %d ms, downtime %d ms, post-copy %d ms, %d requested, %d pushed, %d skipped, %d reconnects",
		srep.Status, serr, srep.TotalMS, srep.DowntimeMS, srep.PostcopyMS, srep.PagesRequested, srep.PagesPushed, srep.PagesSkipped, srep.Reconnects)
	t.Logf("destination: %s %v, post-copy %d ms, %d requested, %d zero-local, %d landed-local, fault p50 %d us p99 %d us max %d us (over the network: p50 %d us p99 %d us), %d reconnects",
		drep.Status, derr, drep.PostcopyMS, drep.PagesRequested, drep.PagesZeroLocal, drep.PagesLandLocal,
		drep.FaultP50US, drep.FaultP99US, drep.FaultMaxUS, drep.FaultNetP50US, drep.FaultNetP99US, drep.Reconnects)
	if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		t.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
	}
	if srep.Mode != engine.ModePostcopy || drep.Mode != engine.ModePostcopy {
		t.Fatalf("mode: source %q, destination %q", srep.Mode, drep.Mode)
	}
	if src.State() != vmtest.StatePaused || src.Counters().Resumes != 0 || dst.State() != vmtest.StateRunning {
		t.Fatalf("source %s (%+v), destination %s", src.State(), src.Counters(), dst.State())
	}
	if srep.PagesChecked == 0 {
		t.Error("the page check did not run")
	}
	if err := dst.Verify(); err != nil {
		t.Error(err)
	}
	free := src.Free()
	for p := free.NextSet(0); p < free.Len(); p = free.NextSet(p + 1) {
		if pg := dst.Page(p); !bytes.Equal(pg, make([]byte, len(pg))) {
			t.Fatalf("free page %d arrived with data: it was sent", p)
		}
	}
}

// freePages lists the balloon's free pages of v.
func freePages(v *vmtest.VM) []uint64 {
	var out []uint64
	f := v.Free()
	for p := f.NextSet(0); p < f.Len(); p = f.NextSet(p + 1) {
		out = append(out, p)
	}
	return out
}

// TestEmbedPostcopyAlways: "always" switches after the bulk pass; the
// destination's guest writes as it runs and a device reads every page:
// every fault on a free page is resolved locally, none is requested.
func TestEmbedPostcopyAlways(t *testing.T) {
	needUffd(t)
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	var dst *vmtest.VM
	onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
	dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: onResume})
	sspec, dspec := postcopySpecs(t, engine.PostcopyAlways, 0)
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	wait()
	checkPostcopy(t, src, dst, srep, drep, serr, derr)
	if got := srep.SkippedBy["balloon"]; got == 0 {
		t.Error("the balloon skipped nothing")
	}
}

// TestEmbedPostcopyManual: the operator switches in the middle of a
// capped bulk pass: most pages are still owed, the destination's guest
// faults on them and they come on request or in the background, each
// once; faults on free pages never go over the network.
func TestEmbedPostcopyManual(t *testing.T) {
	src, srep, drep := manualSwitch(t, nil)
	if drep.PagesRequested == 0 || srep.PagesRequested == 0 {
		t.Errorf("no page was requested over the network (destination %d, source %d)", drep.PagesRequested, srep.PagesRequested)
	}
	if drep.PagesZeroLocal == 0 {
		t.Error("no fault was resolved locally on a zero or free page")
	}
	if srep.PagesSent+srep.PagesRequested+srep.PagesPushed < src.Pages()-uint64(len(freePages(src))) {
		t.Logf("note: %d sent, %d requested, %d pushed (zero runs make up the rest)", srep.PagesSent, srep.PagesRequested, srep.PagesPushed)
	}
}

// manualSwitch migrates a writing guest with the balloon's free pages,
// capped at 8 MB/s (16 MiB: 2 s of bulk pass), switching to post-copy by
// hand after the first 256 pages; setup may change the specs first. It
// returns the source VM and both reports, checked by checkPostcopy.
func manualSwitch(t *testing.T, setup func(sspec, dspec *session.Spec)) (*vmtest.VM, engine.Report, engine.Report) {
	src, _, srep, drep := manualSwitchVMs(t, setup)
	return src, srep, drep
}

// manualSwitchVMs is manualSwitch, returning the destination too.
func manualSwitchVMs(t *testing.T, setup func(sspec, dspec *session.Spec)) (src, dst *vmtest.VM, srep, drep engine.Report) {
	needUffd(t)
	src = newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
	dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: onResume})
	sspec, dspec := postcopySpecs(t, engine.PostcopyOff, 8<<20)
	if setup != nil {
		setup(&sspec, &dspec)
	}
	start := make(chan struct{})
	sspec.Engine.StartPostcopy = start
	var once sync.Once
	sspec.Progress = func(p engine.Progress) {
		if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
			once.Do(func() { close(start) })
		}
	}
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	wait()
	checkPostcopy(t, src, dst, srep, drep, serr, derr)
	return src, dst, srep, drep
}

// TestEmbedPostcopyCancelIgnored: both embedders cancel their contexts
// the moment the guest runs on the destination in post-copy (an operator's
// Ctrl-C reaching migrate-cancel on both VMMs). The migration carries
// on to the end: cancelling either side then would lose the guest.
func TestEmbedPostcopyCancelIgnored(t *testing.T) {
	needUffd(t)
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	sctx, scancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithCancel(context.Background())
	defer scancel()
	defer dcancel()
	var dst *vmtest.VM
	onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
	dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: func() {
		scancel()
		dcancel()
		onResume()
	}})
	sspec, dspec := postcopySpecs(t, engine.PostcopyAlways, 16<<20) // the pusher takes a while
	var modes sync.Map                                              // phase → the Progress.Mode seen in it (what a VMM checks before a cancel or shutdown)
	sspec.Progress = func(p engine.Progress) { modes.Store(p.Phase, p.Mode) }
	var srep, drep engine.Report
	var serr, derr error
	var wg sync.WaitGroup
	wg.Go(func() { drep, derr = session.Receive(dctx, dst, dspec) })
	srep, serr = session.Send(sctx, src, src, sspec)
	wg.Wait()
	wait()
	checkPostcopy(t, src, dst, srep, drep, serr, derr)
	if srep.PostcopyMS == 0 {
		t.Error("post-copy took no time: the cancels came after it")
	}
	for phase, want := range map[engine.Phase]string{engine.PhaseBulk: engine.ModePrecopy, engine.PhaseStop: engine.ModePostcopy, engine.PhasePostcopy: engine.ModePostcopy} {
		if got, _ := modes.Load(phase); got != want {
			t.Errorf("progress in phase %s said mode %v, want %s", phase, got, want)
		}
	}
}

// TestEmbedPostcopyInProcess: the same manual switch with the TCP
// transport linked into both "VMMs" (session.Spec.TransportInProcess)
// instead of started as a plugin process: post-copy completes
// page-exact, faults go over the network, and no process boundary lies
// on a request's path (the latency is logged; BenchmarkPostcopyFaults*
// measures it).
func TestEmbedPostcopyInProcess(t *testing.T) {
	_, _, drep := manualSwitch(t, func(sspec, dspec *session.Spec) {
		sspec.TransportInProcess, dspec.TransportInProcess = tcp.New(nil), tcp.New(nil)
		sspec.Transport.Path, dspec.Transport.Path = "", "" // nothing to start
	})
	if drep.PagesRequested == 0 {
		t.Error("no page was requested over the network")
	}
}

// TestEmbedPostcopyCut: the transport plugin process of one side (picked
// at random) is killed at a random moment of post-copy; both sides open
// the transport again (a new plugin process), the destination says which
// pages it lacks, and the migration completes page-exact. 20 cuts (3
// with -short, FERRY_POSTCOPY_CUTS if set: `make soak-postcopy` runs 100).
func TestEmbedPostcopyCut(t *testing.T) {
	needUffd(t)
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	if n, err := strconv.Atoi(os.Getenv("FERRY_POSTCOPY_CUTS")); err == nil && n > 0 {
		rounds = n
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := range rounds {
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		if round%5 == 0 {
			delay = 0 // at once: around COMMIT and RUNNING
		}
		side := rng.IntN(2) // 0: kill the source's plugin, 1: the destination's
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
			var dst *vmtest.VM
			onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
			dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: onResume})
			sspec, dspec := postcopyCutSpecs(t)
			start := make(chan struct{})
			sspec.Engine.StartPostcopy = start
			var once, cut sync.Once
			sspec.Progress = func(p engine.Progress) {
				if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
					once.Do(func() { close(start) })
				}
			}
			// The cut is timed from the destination's post-copy phase; the
			// pusher is capped, so post-copy lasts over a second.
			var killed int
			var cutWG sync.WaitGroup
			var sawReconnecting atomic.Bool // the destination's progress said it reconnects
			dspec.Progress = func(p engine.Progress) {
				if p.Reconnecting > 0 {
					sawReconnecting.Store(true)
				}
				if p.Phase != engine.PhasePostcopy {
					return
				}
				cut.Do(func() {
					cutWG.Go(func() {
						time.Sleep(delay)
						killed = killTransport(t, side)
					})
				})
			}
			srep, serr, drep, derr := run(src, dst, sspec, dspec)
			cutWG.Wait()
			wait()
			t.Logf("killed %d transport process(es) of side %d after %v", killed, side, delay)
			checkPostcopy(t, src, dst, srep, drep, serr, derr)
			if killed > 0 && srep.Reconnects == 0 && drep.Reconnects == 0 {
				t.Logf("the cut came after the last page (no reconnect needed)")
			}
			if drep.Reconnects > 0 && !sawReconnecting.Load() {
				t.Error("the destination reconnected, but its progress never said so")
			}
		})
	}
	if n := uffd.MissedWakeups(); n > 0 {
		t.Logf("the fault loop found a fault the poller had not woken it for %d times (recovered within 20 ms each)", n)
	}
}

// TestEmbedPostcopyPluginStopped: a transport plugin process that stops
// (SIGSTOP: as a deadlocked plugin, or a provider that no longer makes
// progress) in post-copy keeps its connections up, so nothing breaks and,
// post-copy being beyond cancelling, nothing would ever end the wait.
// Each side takes a session without progress for StallTimeout for
// broken, closes it (the stopped process is killed) and reconnects: the
// migration completes, page-exact, without the process ever going on.
func TestEmbedPostcopyPluginStopped(t *testing.T) {
	needUffd(t)
	for _, side := range []int{1, 0} {
		t.Run([]string{"source", "destination"}[side], func(t *testing.T) {
			src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
			var dst *vmtest.VM
			onResume, wait := toucher(&dst, func() []uint64 { return freePages(src) })
			dst = newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond, OnResume: onResume})
			sspec, dspec := postcopyCutSpecs(t)
			sspec.Engine.StallTimeout, dspec.Engine.StallTimeout = 2*time.Second, 2*time.Second
			// Closing a stopped plugin waits out its Close (closeTimeout),
			// then go-plugin's own grace: give the reconnect the room.
			sspec.Engine.ReconnectTimeout, dspec.Engine.ReconnectTimeout = time.Minute, time.Minute
			start := make(chan struct{})
			sspec.Engine.StartPostcopy = start
			var once, stop sync.Once
			sspec.Progress = func(p engine.Progress) {
				if p.Phase == engine.PhaseBulk && p.PagesSent > 256 {
					once.Do(func() { close(start) })
				}
			}
			name := map[int]string{0: "ferry-transport-tcp", 1: dstPluginName}[side]
			stopped := make(chan int, 1)
			dspec.Progress = func(p engine.Progress) {
				if p.Phase == engine.PhasePostcopy {
					stop.Do(func() {
						go func() {
							time.Sleep(200 * time.Millisecond)
							stopped <- plugintest.SignalChildren(t, name, syscall.SIGSTOP)
						}()
					})
				}
			}
			type result struct {
				srep, drep engine.Report
				serr, derr error
			}
			done := make(chan result, 1)
			go func() {
				var r result
				r.srep, r.serr, r.drep, r.derr = run(src, dst, sspec, dspec)
				done <- r
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(90 * time.Second):
				plugintest.SignalChildren(t, name, syscall.SIGCONT) // let it end
				<-done
				t.Fatal("post-copy did not end within 90 s of a plugin process stopping")
			}
			wait()
			n := <-stopped
			if n == 0 {
				t.Skip("the migration ended before the plugin was stopped")
			}
			checkPostcopy(t, src, dst, r.srep, r.drep, r.serr, r.derr)
			if r.srep.Reconnects == 0 && r.drep.Reconnects == 0 {
				t.Error("completed without a reconnect: was the plugin stopped in time?")
			}
			t.Logf("source %d reconnects, destination %d; post-copy %d ms", r.srep.Reconnects, r.drep.Reconnects, r.srep.PostcopyMS)
		})
	}
}

// killTransport kills the TCP transport plugin process of one side
// (0: the source's, 1: the destination's, which runs from the link
// postcopyCutSpecs made) and returns how many it killed.
func killTransport(t *testing.T, side int) int {
	name := "ferry-transport-tcp"
	if side == 1 {
		name = dstPluginName
	}
	return plugintest.KillChildren(t, name)
}

// dstPluginName is the destination's transport binary in the cut test: a
// link to the TCP plugin, so the two sides' processes can be told apart.
const dstPluginName = "dst-ferry-transport-tcp"

// postcopyCutSpecs are postcopySpecs whose destination runs the TCP
// plugin through a link named dstPluginName.
func postcopyCutSpecs(t *testing.T) (src, dst session.Spec) {
	src, dst = postcopySpecs(t, engine.PostcopyOff, 8<<20)
	linkDstPlugin(t, &dst)
	return src, dst
}

// linkDstPlugin makes dst run its transport plugin through a link named
// dstPluginName.
func linkDstPlugin(t *testing.T, dst *session.Spec) {
	link := filepath.Join(t.TempDir(), dstPluginName)
	if err := os.Symlink(dst.Transport.Path, link); err != nil {
		t.Fatal(err)
	}
	dst.Transport.Path = link
}

// landTwice is the destination's transport reporting a page that
// landed after COMMIT, and that the guest then touched, a second time, as
// a transport that broke the exactly-once rule would: the fault service
// refuses it and post-copy breaks for good there, with the VM running.
type landTwice struct {
	transport.Transport
	touch           func(p uint64) // reads page p as the guest would
	committed, done atomic.Bool
	picked          bool // page holds the first page landed after COMMIT
	page            uint64
}

func (l *landTwice) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == engine.MsgCommit {
		l.committed.Store(true)
	}
	return m, err
}

// Landed is called by the destination's landed lane alone.
func (l *landTwice) Landed(ctx context.Context) ([]transport.PageRun, error) {
	runs, err := l.Transport.Landed(ctx)
	switch {
	case err != nil || len(runs) == 0 || !l.committed.Load() || l.done.Load():
	case !l.picked:
		l.picked, l.page = true, runs[0].First
	default:
		l.touch(l.page) // placed now: it landed before this call
		l.done.Store(true)
		runs = append(runs, transport.PageRun{First: l.page, Count: 1, Kind: transport.KindData})
	}
	return runs, err
}

// TestEmbedPostcopyDestinationBroken: post-copy breaks for good on the
// destination while both VMMs live (its fault service refuses a page):
// the destination halts the VM and says BROKEN, and the source, which
// would otherwise reconnect for its whole reconnect_timeout, stops at
// once with post-copy broken and the destination's reason, its copy
// paused and never resumed.
func TestEmbedPostcopyDestinationBroken(t *testing.T) {
	needUffd(t)
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	dst := newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond})
	sspec, dspec := postcopySpecs(t, engine.PostcopyAlways, 8<<20) // the pusher takes seconds
	sspec.Engine.ReconnectTimeout = 50 * time.Second
	lt := &landTwice{Transport: tcp.New(nil), touch: func(p uint64) { dst.Page(p) }}
	dspec.TransportInProcess, dspec.Transport.Path = lt, ""
	start := time.Now()
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	took := time.Since(start)
	t.Logf("source: %s %v\ndestination: %s %v\nafter %v", srep.Status, serr, drep.Status, derr, took)
	if !lt.done.Load() {
		t.Fatal("no page landed after COMMIT")
	}
	if !errors.Is(derr, engine.ErrPostcopyBroken) || drep.Status != engine.StatusPostcopyBroken || dst.State() != vmtest.StateHalted {
		t.Fatalf("destination: %s %v, VM %s", drep.Status, derr, dst.State())
	}
	if !errors.Is(serr, engine.ErrPostcopyBroken) || srep.Status != engine.StatusPostcopyBroken ||
		!strings.Contains(serr.Error(), "broke for good on the destination") || !strings.Contains(serr.Error(), "in state placed") {
		t.Fatalf("source: %s %v", srep.Status, serr)
	}
	if src.State() != vmtest.StatePaused || src.Counters().Resumes != 0 {
		t.Errorf("source %s (%+v)", src.State(), src.Counters())
	}
	if took > 20*time.Second {
		t.Errorf("took %v: the source waited for a reconnect", took)
	}
}
