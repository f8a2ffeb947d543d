package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/internal/uffd"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// A post-copy destination's LoadState runs after POSTCOPY, before
// COMMIT, with guest RAM registered: a page it touches that the source
// still owes is asked for and waited for in the fault (a device's state
// load reading guest RAM). Until 2026-12-06 nothing watched that wait:
// a source that stopped answering, its connection up, held the
// destination in LoadState for ever, past its caller's cancel too (a
// fault does not end with a context).

// faultingLoad is a destination VM whose LoadState first reads pages
// (of region 0) through the VM's own registered mapping, one after the
// other, in the kernel (MADV_POPULATE_READ), as a device's state load
// might. It counts the engine's calls of its PostcopyTarget methods
// made while LoadState ran (overlaps, when not nil): the engine calls
// them one at a time (docs/EMBEDDING.md, "Who calls what, when").
type faultingLoad struct {
	*vmtest.VM
	pages    []uint64
	loading  *atomic.Bool
	overlaps *atomic.Int32
}

// newFaultingLoad is a faultingLoad of vm that counts overlaps.
func newFaultingLoad(vm *vmtest.VM, pages ...uint64) faultingLoad {
	return faultingLoad{VM: vm, pages: pages, loading: new(atomic.Bool), overlaps: new(atomic.Int32)}
}

func (f faultingLoad) overlapped() {
	if f.loading != nil && f.loading.Load() {
		f.overlaps.Add(1)
	}
}

func (f faultingLoad) Postcopy(t framework.Toucher) { f.overlapped(); f.VM.Postcopy(t) }
func (f faultingLoad) Resume() error                { f.overlapped(); return f.VM.Resume() }
func (f faultingLoad) Halt() error                  { f.overlapped(); return f.VM.Halt() }

// soleCall: no PostcopyTarget method was called while LoadState ran.
func (f faultingLoad) soleCall(t *testing.T) {
	t.Helper()
	if n := f.overlaps.Load(); n != 0 {
		t.Errorf("the engine called the Target %d times while LoadState ran; want one call at a time", n)
	}
}

func (f faultingLoad) LoadState(ctx context.Context, b []byte) error {
	if f.loading != nil {
		f.loading.Store(true)
		defer f.loading.Store(false)
	}
	m := f.GuestMemory(0)
	for _, p := range f.pages {
		if err := uffd.Populate(sliceAddr(m[p*framework.PageSize:]), framework.PageSize, false); err != nil {
			return err
		}
	}
	return f.VM.LoadState(ctx, b)
}

// TestPostcopyLoadStalled: the destination's LoadState faults on a page
// the source never sent; the source reads the REQUEST and then answers
// nothing, its connection up (its process stopped). The destination
// fails on the stall within about StallTimeout, not at the test's
// deadline: it tells the source (ABORT, naming the stall), reports
// failed (not cancelled: nobody cancelled), never resumed its VM, and
// closed its userfaultfd.
func TestPostcopyLoadStalled(t *testing.T) {
	s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.StallTimeout, opt.SwitchoverTimeout = stallLimit, stallLimit
	const p = 10 // never sent (pcPages), not free
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := newFaultingLoad(vm, p)
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var took time.Duration
	var got string
	failed := runScript(func() {
		s.toState(ctx, never, stale)
		sent := time.Now()
		loadFaulted(ctx, s, p)
		got = abortOrUnblock(s, cancel, p) // from here the source answers nothing
		took = time.Since(sent)
	})
	rep, err := returned(t, wait)
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !errors.Is(err, errStalled) || !strings.Contains(err.Error(), "LoadState") || rep.Status != StatusFailed ||
		rep.Handover != HandoverFailed {
		t.Errorf("Receive: %v, status %s, handover %s; want failed on the stall in LoadState", err, rep.Status, rep.Handover)
	}
	if !strings.HasPrefix(got, "ABORT") || !strings.Contains(got, "stalled") {
		t.Errorf("the source was told %q; want an ABORT naming the stall", got)
	}
	neverRan(t, vm)
	dst.soleCall(t)
}

// TestPostcopyLoadEnded: while LoadState waits in a fault on a page the
// source does not send, the migration ends otherwise: its caller
// cancels, or the fault service fails (the transport lands a page the
// guest already owns). Either ended only the wait for the next message
// until 2026-12-06, not LoadState's fault: Receive never returned. Now
// the destination ends at once (cancelled, or failed on the fault
// service), tells the source, never resumed its VM, and closed its
// userfaultfd.
func TestPostcopyLoadEnded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status Status
		want   error
	}{
		{"cancelled", StatusCancelled, context.Canceled},
		{"fault service", StatusFailed, errPostcopySetup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
			const p, zp = 10, 20 // never sent; free, sent as a zero run (a hole here, zero-known)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dst := newFaultingLoad(vm, zp, p)
			wait := receiveAsync(ctx, dst, rcv, opt)
			never, stale := pcPages(s)
			var got string
			failed := runScript(func() {
				s.toState(ctx, never, stale)
				loadFaulted(ctx, s, p) // page zp was placed here (zero) on its fault
				if tc.status == StatusCancelled {
					cancel()
				} else {
					must(t, s.tr.SendPages(context.Background(), []transport.PageRun{{First: zp, Count: 1, Kind: transport.KindData}}))
				}
				got = abortOrUnblock(s, cancel, p)
			})
			rep, err := returned(t, wait)
			t.Logf("Receive: %v", err)
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			if !errors.Is(err, tc.want) || rep.Status != tc.status || rep.Handover != HandoverFailed {
				t.Errorf("Receive: %v, status %s, handover %s; want %s, failed", err, rep.Status, rep.Handover, tc.status)
			}
			if !strings.HasPrefix(got, "ABORT") {
				t.Errorf("the source was told %q; want an ABORT", got)
			}
			neverRan(t, vm)
			dst.soleCall(t)
		})
	}
}

// loadFaulted reads the REQUEST of LoadState's fault on page p.
func loadFaulted(ctx context.Context, s *script, p uint64) {
	s.t.Helper()
	m, err := s.tr.RecvUrgent(ctx)
	runs, _, _, derr := decodeRuns(nil, m.Payload, s.pages, 0)
	if err != nil || m.Kind != msgRequest || derr != nil || len(runs) != 1 || runs[0] != (pageRun{p, 1}) {
		s.t.Errorf("script: want the REQUEST of page %d, got %s %v: %v %v", p, msgName(m.Kind), runs, err, derr)
		panic(errScript)
	}
}

// abortOrUnblock is the destination's next message as noAnswer reads it,
// within 10 s, the tests' deadline for it. If none came, the destination
// still waits in LoadState's fault on page p: the test fails, then
// sends it the page and cancels it, which ends it if its fault service
// still takes pages (returned bounds the rest).
func abortOrUnblock(s *script, cancel context.CancelFunc, p uint64) string {
	start := time.Now()
	got := noAnswer(context.Background(), s, 10*time.Second)
	if got == "" {
		s.t.Errorf("the destination still waits in LoadState's fault after %v", time.Since(start).Round(time.Millisecond))
		must(s.t, s.tr.SendPagesUrgent(context.Background(), []transport.PageRun{{First: p, Count: 1, Kind: transport.KindData}}))
		cancel()
	}
	return got
}

// returned is wait's answer. A Receive that has not returned 10 s later
// still waits in LoadState's fault although its caller cancelled and the
// page was sent (abortOrUnblock): its fault service no longer takes
// pages. The test then ends at once; the fault is left waiting.
func returned(t *testing.T, wait func() (Report, error)) (Report, error) {
	t.Helper()
	type result struct {
		rep Report
		err error
	}
	ch := make(chan result, 1)
	go func() { rep, err := wait(); ch <- result{rep, err} }()
	select {
	case r := <-ch:
		return r.rep, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("Receive never returned: LoadState still waits in its fault")
	}
	return Report{}, nil
}

// neverRan: the destination's VM was never resumed, and no userfaultfd
// is left open.
func neverRan(t *testing.T, vm *vmtest.VM) {
	t.Helper()
	if c := vm.Counters(); c.Resumes != 0 || vm.State() == vmtest.StateRunning || uffdOpen() != 0 {
		t.Errorf("resumed %d, VM %v, userfaultfds open %d; want never resumed, none open", c.Resumes, vm.State(), uffdOpen())
	}
}

// TestPostcopyLoadSlowNotStalled: a source that answers LoadState's
// faults slowly, each later than half of StallTimeout and all of them
// together much later than StallTimeout, is not stalled: each page that
// lands is progress. The migration completes page-exact.
func TestPostcopyLoadSlowNotStalled(t *testing.T) {
	s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
	limit := 4 * stallLimit // a loaded machine must not make slow look stalled (TestPrecopySlowNotStalled)
	opt.StallTimeout, opt.SwitchoverTimeout = limit, limit
	pages := []uint64{3, 10, 66, 73} // never sent (pcPages), not free (pcFree)
	dst := faultingLoad{VM: vm, pages: pages}
	s.lateLeft, s.lateBy = len(pages), limit/2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	savedSeq := loadToEnd(t, ctx, s, dst, rcv, opt)
	s.mu.Lock()
	for _, p := range pages {
		if !s.requested.Test(p) {
			t.Errorf("page %d was not requested", p)
		}
	}
	s.mu.Unlock()
	checkPages(t, s, vm, savedSeq, ^uint64(0))
}

// loadToEnd plays the source of a post-copy handover whose
// destination's LoadState faults on pages the source owes: the state,
// then the fault service, COMMIT, the pushed rest and the page check.
// It fails t unless Receive completes, and returns the source's
// sequence at the switch (for checkPages).
func loadToEnd(t *testing.T, ctx context.Context, s *script, dst framework.Target, rcv *loopback.Transport, opt Options) (savedSeq uint64) {
	t.Helper()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.toState(ctx, never, stale)
		savedSeq = s.src.Seq()
		go s.serve(ctx)
		s.recv(ctx, msgLoaded)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.push(ctx)
		s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err != nil || rep.Status != StatusCompleted {
		t.Fatalf("Receive: %v, status %s", err, rep.Status)
	}
	return savedSeq
}

// goReadLoad is a destination VM whose LoadState first reads a page of
// guest RAM from Go, as a device's state load might (a virtio queue's
// ring): through vmtest's Page, which, as the reference VMM's device
// code does (vmm/guestram.go), has the engine's Toucher bring the page
// in first when one is set, then copies it (memmove: code Go cannot
// preempt).
type goReadLoad struct {
	*vmtest.VM
	page uint64
	got  []byte
}

func (g *goReadLoad) LoadState(ctx context.Context, b []byte) error {
	if g.got = g.Page(g.page); g.got == nil {
		return errors.New("read guest RAM: the Toucher failed")
	}
	return g.VM.LoadState(ctx, b)
}

// loadGoReadChild marks the child process of TestPostcopyLoadGoRead.
const loadGoReadChild = "FERRY_PC_LOAD_GO_READ"

// TestPostcopyLoadGoRead: a post-copy destination's LoadState reads,
// from Go, a page the source still owes, and a garbage collection
// starts while it waits for it (the source collects before it answers;
// any allocation may start one). The read must wait inside a system
// call, through the Toucher (Service.Populate), not in user mode in the
// copy: a thread blocked on a fault there cannot be stopped, the
// collection never stops the world, and the process hangs for good, its
// fault loop and stall watch with it (docs/POSTCOPY.md, "Go and page
// faults"). Until 2026-12-06 the engine handed the Toucher over only at
// COMMIT, after LoadState: the process hung. It runs in a child
// process, which the test kills if it has not ended in time.
func TestPostcopyLoadGoRead(t *testing.T) {
	needUffd(t)
	if os.Getenv(loadGoReadChild) != "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPostcopyLoadGoRead$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), loadGoReadChild+"=1")
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("the destination's process hung (killed after 20 s): LoadState waited on a fault in user mode "+
				"while a collection started\n%s", out)
		}
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
	const p = 10 // never sent (pcPages), not free
	dst := &goReadLoad{VM: vm, page: p}
	s.onAsk = runtime.GC
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loadToEnd(t, ctx, s, dst, rcv, opt)
	if !bytes.Equal(dst.got, s.src.Page(p)) {
		t.Errorf("LoadState read page %d as %x..., the source holds %x...", p, dst.got[:16], s.src.Page(p)[:16])
	}
}

// TestPostcopyLoadCut: while the destination's LoadState waits in a
// fault on a page the source owes, the source's session ends (its
// switch-over deadline passed and it gave up, or its process died): a
// cut before LOADED, on which a destination fails at once, as it does
// between messages. Until 2026-12-06 nothing read the session meanwhile:
// LoadState waited out the stall bound (stall_timeout, 30 s by default)
// on a session already gone.
func TestPostcopyLoadCut(t *testing.T) {
	s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
	const limit = 8 * time.Second
	opt.StallTimeout, opt.SwitchoverTimeout = limit, limit
	const p = 10 // never sent (pcPages), not free
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := newFaultingLoad(vm, p)
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var cut time.Time
	failed := runScript(func() {
		s.toState(ctx, never, stale)
		loadFaulted(ctx, s, p)
		cut = time.Now()
		must(t, s.tr.Close())
	})
	rep, err := returned(t, wait)
	took := time.Since(cut)
	t.Logf("%v after the cut: %v", took.Round(time.Millisecond), err)
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if took > limit/2 {
		t.Errorf("Receive returned %v after the source's session ended; want at once, not after the stall bound %v",
			took.Round(time.Millisecond), limit)
	}
	if err == nil || errors.Is(err, errStalled) || rep.Status != StatusFailed || rep.Handover != HandoverFailed {
		t.Errorf("Receive: %v, status %s, handover %s; want failed on the session's end", err, rep.Status, rep.Handover)
	}
	neverRan(t, vm)
	dst.soleCall(t)
}
