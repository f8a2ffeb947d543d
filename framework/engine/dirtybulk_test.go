package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// dirtyPage is the page dirtyBulk writes: in the first region, not
// free (pcFree), so it travels as data and is owed when dirty.
const dirtyPage = 100

// dirtyBulk is the source's transport whose first SendPages (the bulk
// pass, the guest running, its writes logged) first writes dirtyPage of
// the guest, so that post-copy owes that page at the switch whatever
// the guest's own writer did. That writer ticks every millisecond, and
// a bulk pass of a few milliseconds can run without one of its writes
// landing in it (the pass reports dirty=0): the destination then holds
// every page, and a test that needs owed pages tests nothing
// (TestPostcopyVerifiedLost failed so 5 of 300 runs,
// TestPostcopyDeadSessionClosedFirst 6 of 300,
// TestPostcopyLaneReleasedByCloseNotMissing 1 of 300). It also notes
// whether dirtyPage went out after COMMIT (owedSent). It cannot make a
// page owed in a migration that is not post-copy "always", nor in one
// whose bulk pass sends nothing.
type dirtyBulk struct {
	transport.Transport
	src  *vmtest.VM
	once sync.Once
	done atomic.Bool
	err  error // the write's, read after Send returned

	committed atomic.Bool // COMMIT went out
	sentOwed  atomic.Bool // dirtyPage went out after COMMIT
}

// wrap is bothEnginesWrapped's source wrap.
func (d *dirtyBulk) wrap(str transport.Transport, src *vmtest.VM) transport.Transport {
	d.Transport, d.src = str, src
	return d
}

// SendPages implements transport.Transport: the first call writes
// dirtyPage first.
func (d *dirtyBulk) SendPages(ctx context.Context, runs []transport.PageRun) error {
	d.once.Do(func() {
		d.err = d.src.Write(dirtyPage << 12)
		d.done.Store(true)
	})
	d.noteOwed(runs)
	return d.Transport.SendPages(ctx, runs)
}

// SendPagesUrgent implements transport.Transport (a fault's page).
func (d *dirtyBulk) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	d.noteOwed(runs)
	return d.Transport.SendPagesUrgent(ctx, runs)
}

// SendMessage implements transport.Transport, noting COMMIT.
func (d *dirtyBulk) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgCommit {
		d.committed.Store(true)
	}
	return d.Transport.SendMessage(ctx, m)
}

// noteOwed notes dirtyPage in runs sent after COMMIT.
func (d *dirtyBulk) noteOwed(runs []transport.PageRun) {
	if !d.committed.Load() {
		return
	}
	for _, r := range runs {
		if r.First <= dirtyPage && dirtyPage < r.First+r.Count {
			d.sentOwed.Store(true)
		}
	}
}

// wrote fails t unless the write went into guest RAM during the bulk pass.
func (d *dirtyBulk) wrote(t *testing.T) {
	t.Helper()
	if !d.done.Load() {
		t.Fatal("the source sent no pages: the test did not test it")
	}
	if d.err != nil {
		t.Fatalf("page %d not written during the bulk pass (%v): the test did not test it", dirtyPage, d.err)
	}
}

// owedSent fails t unless the write went into guest RAM during the bulk
// pass and post-copy owed that page: the source sent it after COMMIT.
func (d *dirtyBulk) owedSent(t *testing.T) {
	t.Helper()
	d.wrote(t)
	if !d.sentOwed.Load() {
		t.Fatalf("page %d, written during the bulk pass, never went out after COMMIT: post-copy did not owe it, "+
			"the test did not test it", dirtyPage)
	}
}
