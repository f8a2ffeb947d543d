package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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
	transport.Transport
	keptFor time.Duration

	mu        sync.Mutex
	committed bool          // COMMIT went out
	failedAt  time.Time     // the injected failure; zero: not yet
	closed    chan struct{} // closed by the source's Close after the failure
	kept      bool          // the source still held the session keptFor after the failure
	wg        sync.WaitGroup
}

func (f *failLastPush) SendMessage(ctx context.Context, m transport.Message) error {
	err := f.Transport.SendMessage(ctx, m)
	if err == nil && m.Kind == msgCommit {
		f.mu.Lock()
		f.committed = true
		f.mu.Unlock()
	}
	return err
}

func (f *failLastPush) SendPages(ctx context.Context, runs []transport.PageRun) error {
	var n uint64
	for _, r := range runs {
		n += r.Count
	}
	f.mu.Lock()
	inject := f.committed && f.failedAt.IsZero() && n < pushBatchPages
	if inject {
		f.failedAt, f.closed = time.Now(), make(chan struct{})
		f.wg.Go(f.watch)
	}
	f.mu.Unlock()
	if inject {
		return errors.New("injected: SendPages refused, nothing written, the session goes on")
	}
	return f.Transport.SendPages(ctx, runs)
}

// watch ends the session itself if the source did not within keptFor
// of the failure.
func (f *failLastPush) watch() {
	t := time.NewTimer(f.keptFor)
	defer t.Stop()
	select {
	case <-f.closed:
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
// it after 10 s and said so).
func TestPostcopyPushFailedNothingOwed(t *testing.T) {
	f := &failLastPush{keptFor: 10 * time.Second}
	var src *vmtest.VM
	r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		f.Transport, src = str, v
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
	if r.serr != nil || r.srep.Status != StatusCompleted || r.derr != nil || r.drep.Status != StatusCompleted {
		t.Fatalf("source %s (%v), destination %s (%v): want both completed", r.srep.Status, r.serr, r.drep.Status, r.derr)
	}
	if r.srep.Reconnects != 1 || r.drep.Reconnects != 1 {
		t.Errorf("reconnects: source %d, destination %d; want 1 each (MISSING named the failed call's pages)",
			r.srep.Reconnects, r.drep.Reconnects)
	}
	must(t, dst.Verify())
	must(t, vmtest.Equal(src, dst))
}
