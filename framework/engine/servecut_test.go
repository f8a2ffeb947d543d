package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// deafAnswer is the source's transport whose first SendPagesUrgent
// ignores its context: it holds until release is closed, whatever the
// context says, as a third party's plugin that does not honour it would
// (transport.Transport asks every call to). returned is closed once
// that call returned.
type deafAnswer struct {
	transport.Transport
	release, returned chan struct{}

	mu       sync.Mutex
	started  bool // the first answer began
	released bool // release was closed
}

// SendPagesUrgent implements transport.Transport: the first call holds
// (see the type).
func (d *deafAnswer) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	d.mu.Lock()
	first := !d.started
	d.started = true
	d.mu.Unlock()
	if !first {
		return d.Transport.SendPagesUrgent(ctx, runs)
	}
	defer close(d.returned)
	<-d.release
	return d.Transport.SendPagesUrgent(ctx, runs)
}

// let closes release, once.
func (d *deafAnswer) let() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.released {
		d.released = true
		close(d.release)
	}
}

// stuck reports whether the first answer began and was not let go yet.
func (d *deafAnswer) stuck() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started && !d.released
}

// TestPostcopyCutServingBounded: a post-copy switch-over fails before
// COMMIT on its deadline while an answer to a page request is in flight
// through a transport that ignores its context. The source resumes the
// VM, waits answerTimeout for the answer (stopServing), cuts it, and
// goes on after cutServingWait without it, the request server's
// goroutine left behind. Before, cutServing's join waited for that
// goroutine for as long as the transport held it: Send returned only
// once the test let the answer go, after 15 s.
func TestPostcopyCutServingBounded(t *testing.T) {
	src := dataGuest(t, 8*mib)
	allDirtyAfterBulk(src)
	deaf := &deafAnswer{release: make(chan struct{}), returned: make(chan struct{})}
	safety := time.AfterFunc(15*time.Second, deaf.let) // the bound of the test itself
	defer safety.Stop()
	opt := Options{Postcopy: PostcopyAlways, SwitchoverTimeout: 300 * time.Millisecond}
	_, r := runPostcopy(t, src, opt, func(d *scriptDst) {
		d.loadFaults = []pageRun{{10, 1}}
		d.wrapSrc = func(tr transport.Transport) transport.Transport {
			deaf.Transport = tr
			return deaf
		}
	})
	stuckAtReturn := deaf.stuck()
	deaf.let()
	select {
	case <-deaf.returned:
	case <-time.After(10 * time.Second):
		t.Error("the held answer did not return once let go")
	}
	deaf.mu.Lock()
	started := deaf.started
	deaf.mu.Unlock()
	if !started {
		t.Fatal("no answer was in flight as the switch-over failed: the test did not test it")
	}
	if r.serr == nil || !strings.Contains(r.serr.Error(), "switchover_timeout") {
		t.Errorf("send: %v, want the switch-over deadline's failure", r.serr)
	}
	if !stuckAtReturn {
		t.Error("Send returned only once the answer that ignores its context was let go: cutServing's join is unbounded")
	}
	if !strings.Contains(r.logs.String(), "left running in that call") {
		t.Errorf("the source's log does not say the request server was left running:\n%s", r.logs)
	}
	src.mu.Lock()
	paused, resumed := src.paused, src.resumed
	src.mu.Unlock()
	if r.srep.Status != StatusFailed || paused || resumed != 1 {
		t.Errorf("source: %s (%s), VM paused %v, resumed %d times; want failed, the VM resumed here once",
			r.srep.Status, r.srep.Handover, paused, resumed)
	}
}
