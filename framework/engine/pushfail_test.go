package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// failLastPush is the source's transport whose push SendPages that
// takes the last owed pages (fewer than a push batch, after COMMIT)
// fails once, writing nothing, while the session goes on: as a
// transport may refuse a call without ending its session (the
// transport contract promises no more). If the source still holds that
// session keptFor after the failure, the wrapper ends it itself (kept),
// so that the test ends however the source behaves.
type failLastPush struct {
	afterCommit
	keptFor time.Duration

	mu       sync.Mutex
	failedAt time.Time     // the injected failure; zero: not yet
	closed   chan struct{} // closed by the source's Close after the failure
	kept     bool          // the source still held the session keptFor after the failure
	wg       sync.WaitGroup
}

// afterCommit is a source's transport that notes COMMIT going out, so
// that a wrapper can tell a post-copy push taking the last owed pages
// (lastPush) from the pre-copy passes and the bulk of the push.
type afterCommit struct {
	transport.Transport
	src       *vmtest.VM // written during the bulk pass (dirtyOnce)
	committed atomic.Bool
	dirtied   atomic.Bool

	pushMu sync.Mutex
	pushed map[uint64]bool // pages of push calls after COMMIT that the transport took (sendPages)
}

// sendPages is the transport's SendPages, noting the pages of a push
// after COMMIT that it took (nil error) in pushed.
func (a *afterCommit) sendPages(ctx context.Context, runs []transport.PageRun) error {
	if err := a.Transport.SendPages(ctx, runs); err != nil || !a.committed.Load() {
		return err
	}
	a.pushMu.Lock()
	defer a.pushMu.Unlock()
	if a.pushed == nil {
		a.pushed = map[uint64]bool{}
	}
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			a.pushed[p] = true
		}
	}
	return nil
}

// pushedOnce fails t unless the source's pages_pushed counts each page
// its pushes delivered once: no more than the distinct pages of push
// calls the transport took after COMMIT (not the pages of a call it
// refused, nor a page again when it is pushed again after a reconnect),
// and not 0.
func (a *afterCommit) pushedOnce(t *testing.T, r pcResult) {
	t.Helper()
	a.pushMu.Lock()
	took := uint64(len(a.pushed))
	a.pushMu.Unlock()
	t.Logf("pages_pushed %d, pages_requested %d; distinct pages of push calls the transport took: %d",
		r.srep.PagesPushed, r.srep.PagesRequested, took)
	if r.srep.PagesPushed == 0 || r.srep.PagesPushed > took {
		t.Errorf("pages_pushed %d, want 1 to %d: the distinct pages of push calls the transport took", r.srep.PagesPushed, took)
	}
}

// dirtyOnce writes pages 0-7 of the source guest during the first call
// before COMMIT (the bulk pass), so that they are dirty at the switch
// and owed in post-copy: the guest's own writer (every millisecond) may
// not be scheduled while a short bulk pass runs on a loaded machine,
// and without owed pages there is no last push to fail.
func (a *afterCommit) dirtyOnce() error {
	if a.committed.Load() || a.src == nil || !a.dirtied.CompareAndSwap(false, true) {
		return nil
	}
	for p := range uint64(8) {
		if err := a.src.Write(p * framework.PageSize); err != nil {
			return err
		}
	}
	return nil
}

func (a *afterCommit) SendMessage(ctx context.Context, m transport.Message) error {
	err := a.Transport.SendMessage(ctx, m)
	if err == nil && m.Kind == msgCommit {
		a.committed.Store(true)
	}
	return err
}

// lastPush reports whether runs, sent after COMMIT, are fewer pages than
// a push batch: the push's last call, which takes the last owed pages.
func (a *afterCommit) lastPush(runs []transport.PageRun) bool {
	var n uint64
	for _, r := range runs {
		n += r.Count
	}
	return a.committed.Load() && n < pushBatchPages
}

func (f *failLastPush) SendPages(ctx context.Context, runs []transport.PageRun) error {
	if err := f.dirtyOnce(); err != nil {
		return err
	}
	last := f.lastPush(runs)
	f.mu.Lock()
	inject := last && f.failedAt.IsZero()
	if inject {
		closed := make(chan struct{})
		f.failedAt, f.closed = time.Now(), closed
		f.wg.Go(func() { f.watch(closed) })
	}
	f.mu.Unlock()
	if inject {
		return errors.New("injected: SendPages refused, nothing written, the session goes on")
	}
	return f.sendPages(ctx, runs)
}

// watch ends the session itself if the source did not (closed, the
// f.closed of the failure: Close sets f.closed nil) within keptFor of
// the failure.
func (f *failLastPush) watch(closed chan struct{}) {
	t := time.NewTimer(f.keptFor)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed != nil {
			f.kept, f.closed = true, nil
			f.Transport.Close()
		}
	}
}

func (f *failLastPush) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed != nil {
		close(f.closed)
		f.closed = nil
	}
	return f.Transport.Close()
}

// TestPostcopyPushFailedNothingOwed: the push call that takes the last
// owed pages fails without ending the session (nothing of it written).
// Nothing is owed by the source's count, but the destination lacks
// those pages: no SETTLED can come, and a fault on one of them is not
// answered (the page is no longer owed: its queued copy is waited
// for). The source must end the session soon, so that the reconnect's
// MISSING names them: every page then arrives and both sides complete.
// Before, it waited for SETTLED until its stall watch ended the session
// (stall_timeout, 30 s by default; here 2 minutes, so the wrapper ended
// it after 10 s and said so). pages_pushed counts the failed call's
// pages once, when pushed again (pushedOnce; before, twice).
func TestPostcopyPushFailedNothingOwed(t *testing.T) {
	f := &failLastPush{keptFor: 10 * time.Second}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		f.Transport, f.src, src = str, v, v
		return f
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
	})
	f.wg.Wait()
	f.mu.Lock()
	failedAt, kept := f.failedAt, f.kept
	f.mu.Unlock()
	if failedAt.IsZero() {
		t.Fatalf("no push call took the last pages after COMMIT (a batch exactly full?): the test proves nothing; "+
			"source %s (%v)", r.srep.Status, r.serr)
	}
	if kept {
		t.Errorf("the source still held the session %v after its last push failed with nothing owed: "+
			"it waited for SETTLED while the destination lacked that call's pages", f.keptFor)
	}
	completedAfter(t, r, src, dst, 1, "MISSING named the failed call's pages")
	f.pushedOnce(t, r)
}

// failLastPushSome is the source's transport whose push SendPages that
// takes the last owed pages (fewer than a push batch, after COMMIT)
// fails, times times, after it passed written of its runs on: a
// transport that refuses a call part of which it already queued (a
// launched plugin's SendPages is several RPCs; one that fails leaves
// the earlier ones queued), while the session goes on.
type failLastPushSome struct {
	afterCommit
	times   int
	written func([]transport.PageRun) []transport.PageRun

	mu     sync.Mutex
	failed int
}

func (f *failLastPushSome) SendPages(ctx context.Context, runs []transport.PageRun) error {
	if err := f.dirtyOnce(); err != nil {
		return err
	}
	last := f.lastPush(runs)
	f.mu.Lock()
	inject := last && f.failed < f.times
	if inject {
		f.failed++
	}
	f.mu.Unlock()
	if !inject {
		return f.sendPages(ctx, runs)
	}
	if w := f.written(runs); len(w) > 0 {
		if err := f.sendPages(ctx, w); err != nil {
			return err
		}
	}
	return errors.New("injected: SendPages refused after queueing part of it, the session goes on")
}

// TestPostcopyPushFailedPartlyWritten: the last push call fails with
// the session up after it queued the first half of its pages, once and
// then again on each of the next three sessions. The destination's
// MISSING after each reconnect names only what did not land: nothing
// is lost and no page placed twice (the fault service refuses a
// landed page the guest owns), every failure costs one reconnect, and
// pages_pushed counts each pushed page once (pushedOnce; before, a
// failed call's pages counted again when pushed again).
func TestPostcopyPushFailedPartlyWritten(t *testing.T) {
	f := &failLastPushSome{times: 4, written: func(runs []transport.PageRun) []transport.PageRun { return runs[:len(runs)/2] }}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		f.Transport, f.src, src = str, v, v
		return f
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
	})
	if f.failed == 0 {
		t.Fatalf("no push call took the last pages after COMMIT: the test proves nothing; source %s (%v)", r.srep.Status, r.serr)
	}
	completedAfter(t, r, src, dst, f.failed, "one per failed call")
	f.pushedOnce(t, r)
}

// settledLate is failLastPushSome's source transport that hands the
// destination's SETTLED to the engine only settledHold after the
// injected failure returned: after the source's doubt gave up on the
// session (unsureWait, shortened by the test), while it looks for the
// destination's last word before it reconnects (lastWordWait).
type settledLate struct {
	*failLastPushSome
	failedOnce chan struct{} // closed as the injected failure returns
	once       sync.Once
}

func (s *settledLate) SendPages(ctx context.Context, runs []transport.PageRun) error {
	err := s.failLastPushSome.SendPages(ctx, runs)
	s.failLastPushSome.mu.Lock()
	failed := s.failLastPushSome.failed > 0
	s.failLastPushSome.mu.Unlock()
	if err != nil && failed {
		s.once.Do(func() { close(s.failedOnce) })
	}
	return err
}

// settledHold: long after unsureWait as the test sets it, well inside
// lastWordWait.
const settledHold = 100 * time.Millisecond

func (s *settledLate) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := s.failLastPushSome.RecvMessage(ctx)
	if err != nil || m.Kind != msgSettled {
		return m, err
	}
	select {
	case <-s.failedOnce:
	case <-ctx.Done():
		return m, ctx.Err()
	}
	t := time.NewTimer(settledHold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return m, ctx.Err()
	}
	return m, nil
}

// TestPostcopySettledAfterDoubt: the last push call fails with the
// session up after it queued all of its pages, so the destination has
// every page and sends SETTLED; it reaches the source just after the
// source's doubt gave up on the session, while the source looks for
// the destination's last word. The source completes on that SETTLED,
// answering it on the session that carried it. Before, it dropped it
// ("message from the destination before the connection broke,
// ignored"), ended the session and reconnected to be told again, and
// heard it only if the destination still listened for it
// (lingerToTell, which a cancel of the destination's caller ends): a
// source that held SETTLED could end postcopy-broken, paused.
func TestPostcopySettledAfterDoubt(t *testing.T) {
	old := unsureWait
	unsureWait = 10 * time.Millisecond
	t.Cleanup(func() { unsureWait = old })
	f := &settledLate{failLastPushSome: &failLastPushSome{times: 1,
		written: func(runs []transport.PageRun) []transport.PageRun { return runs }}, failedOnce: make(chan struct{})}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		f.failLastPushSome.Transport, f.failLastPushSome.src, src = str, v, v
		return f
	}, func(sopt, dopt *Options) {
		sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
	})
	if f.failed == 0 {
		t.Fatalf("no push call took the last pages after COMMIT: the test proves nothing; source %s (%v)", r.srep.Status, r.serr)
	}
	completedAfter(t, r, src, dst, 0, "the source had SETTLED when it gave up on the session")
}

// completedAfter fails t unless both sides completed after reconnects
// reconnects each (why says why that many) and the destination's guest
// memory checks out and equals the source's: no page lost or stale.
func completedAfter(t *testing.T, r pcResult, src, dst *vmtest.VM, reconnects int, why string) {
	t.Helper()
	if r.serr != nil || r.srep.Status != StatusCompleted || r.derr != nil || r.drep.Status != StatusCompleted {
		t.Fatalf("source %s (%v), destination %s (%v): want both completed", r.srep.Status, r.serr, r.drep.Status, r.derr)
	}
	if r.srep.Reconnects != reconnects || r.drep.Reconnects != reconnects {
		t.Errorf("reconnects: source %d, destination %d; want %d each (%s)", r.srep.Reconnects, r.drep.Reconnects, reconnects, why)
	}
	must(t, dst.Verify())
	must(t, vmtest.Equal(src, dst))
}
