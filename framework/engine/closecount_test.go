package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// closeMoves is what bonusClose's close moves in these tests: far more
// than a whole migration moves, so that a report which counted it once
// too often, or left it out, is told apart whatever the sessions
// carried.
const closeMoves = 1 << 40

// bonusClose is a transport whose close of a session moves closeMoves
// more bytes, which its Stats count from that close until the next
// Open that succeeds, as a launched plugin's Stats after its Close
// count what the Close finished (transport.Launch) and tcp's what its
// close joined. It records each session's totals at its end, the
// bytes included (totals). With openFails, every Open after the first
// fails without opening, and its Stats stay the last session's
// totals, as loopback's do until a session opens: a side that counted
// a session after a failed Open would count the last one twice.
type bonusClose struct {
	transport.Transport
	openFails bool

	mu     sync.Mutex
	opens  int
	open   bool // a session runs
	ended  bool // the last session ended, and no Open succeeded since
	totals []uint64
}

var _ transport.ListenerHolder = (*bonusClose)(nil)

func (b *bonusClose) Open(ctx context.Context, req transport.OpenRequest) error {
	b.mu.Lock()
	b.opens++
	fail := b.openFails && b.opens > 1
	b.mu.Unlock()
	if fail {
		return errors.New("injected: Open failed")
	}
	if err := b.Transport.Open(ctx, req); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.open, b.ended = true, false
	return nil
}

func (b *bonusClose) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := b.Transport.Stats(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		st.BytesWire += closeMoves
	}
	return st, err
}

// end closes the running session with close and records its totals.
func (b *bonusClose) end(close func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := close()
	if b.open {
		st, _ := b.Transport.Stats(context.Background()) // the closed session's (loopback's last)
		b.totals = append(b.totals, st.BytesWire+closeMoves)
		b.open, b.ended = false, true
	}
	return err
}

func (b *bonusClose) Close() error { return b.end(b.Transport.Close) }

func (b *bonusClose) CloseHoldingListeners() error {
	return b.end(func() error { return transport.CloseHolding(b.Transport) })
}

// sessions returns the totals recorded so far.
func (b *bonusClose) sessions() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.totals...)
}

func sum(ns []uint64) uint64 {
	var n uint64
	for _, x := range ns {
		n += x
	}
	return n
}

// countedOnce fails t unless bytes counts every session in totals but
// the last at its totals after its close, and the last (a migration's
// last session, counted before its close, which does not wait for a
// plugin process's exit) at no more than its totals without what its
// close moved.
func countedOnce(t *testing.T, side string, bytes uint64, totals []uint64) {
	t.Helper()
	if len(totals) < 2 {
		t.Fatalf("%s: sessions ended %v: the test proves nothing", side, totals)
	}
	n := len(totals) - 1
	if lo, hi := sum(totals[:n]), sum(totals)-closeMoves; bytes < lo || bytes > hi {
		t.Errorf("%s: bytes_wire %d, want from %d (the %d sessions given up, each with what its close moved: %v) to %d "+
			"(and the last one's bytes before its close)", side, bytes, lo, n, totals[:n], hi)
	}
}

// TestPostcopySendCountsSessionsOnce: a post-copy source counts each
// session it gave up once, at its totals after transport.CloseHolding
// (what the close moved too), in process on loopback as under
// framework/session (TestEmbedPostcopySourceCountsClosedSessions):
// completed after a reconnect, its last session before its Close;
// broken with every RESUME refused, exactly the sessions' totals; and
// broken with every Open after the first failing, exactly the first
// session's, not its totals again from the transport's Stats after a
// failed Open (which are still the last session's); in each, Close is
// called once, at the end. Passed when added (review of 039a08d's
// wireBase arithmetic); mutants that asked the Stats before the close,
// or after a failed Open, failed it.
func TestPostcopySendCountsSessionsOnce(t *testing.T) {
	for _, c := range []struct {
		name                string
		noResume, openFails bool
	}{{"completed", false, false}, {"resume refused", true, false}, {"open fails", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			h := &sendHoldRecorder{noResume: c.noResume}
			b := &bonusClose{Transport: h, openFails: c.openFails}
			var src *vmtest.VM
			r, dst := bothEnginesOn(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
				h.Transport, h.src, src = str, v, v
				return b
			}, func(sopt, dopt *Options) {
				sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
				if c.noResume || c.openFails {
					sopt.ReconnectTimeout, dopt.ReconnectTimeout = 300*time.Millisecond, 300*time.Millisecond
				}
			})
			h.mu.Lock()
			refused, calls := h.refused, slices.Clone(h.calls)
			h.mu.Unlock()
			if !refused {
				t.Fatalf("no push after COMMIT: the test proves nothing; source %s (%v)", r.srep.Status, r.serr)
			}
			totals := b.sessions()
			t.Logf("bytes_wire %d; sessions' totals %v; calls %v", r.srep.BytesWire, totals, calls)
			if last := len(calls) - 1; last < 0 || calls[last] != "close" || slices.Contains(calls[:last], "close") {
				t.Errorf("the source ended its sessions %v, want Close once, at the end", calls)
			}
			switch {
			case !c.noResume && !c.openFails:
				completedAfter(t, r, src, dst, 1, "the refused push's session given up")
				countedOnce(t, "source", r.srep.BytesWire, totals)
			case !errors.Is(r.serr, ErrPostcopyBroken):
				t.Fatalf("source %s (%v), want post-copy broken", r.srep.Status, r.serr)
			case c.openFails && len(totals) != 1:
				t.Fatalf("sessions ended %v, want the first alone", totals)
			case r.srep.BytesWire != sum(totals):
				t.Errorf("bytes_wire %d, want %d: every session given up, each counted once at its totals after its close %v",
					r.srep.BytesWire, sum(totals), totals)
			}
		})
	}
}

// TestPostcopyRecvCountsClosedSession: a post-copy destination counts a
// session it ends for a reconnect (closeSession) at its totals after
// the close, which count what the close moved (a receiving transport's
// close finishes the writes of pages in flight), as the source does
// (endSession). Until 2026-12-07 closeSession asked the session's Stats
// before it closed it: bytes_wire lacked what the close moved.
func TestPostcopyRecvCountsClosedSession(t *testing.T) {
	h := &sendHoldRecorder{}
	b := &bonusClose{}
	var src *vmtest.VM
	r, dst := bothEnginesWrapped(t, func(str transport.Transport, v *vmtest.VM) transport.Transport {
		h.Transport, h.src, src = str, v, v
		return h
	}, func(dtr transport.Transport) transport.Transport { b.Transport = dtr; return b },
		func(sopt, dopt *Options) {
			sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, 2*time.Minute
		})
	h.mu.Lock()
	refused := h.refused
	h.mu.Unlock()
	if !refused {
		t.Fatalf("no push after COMMIT: the test proves nothing; destination %s (%v)", r.drep.Status, r.derr)
	}
	completedAfter(t, r, src, dst, 1, "the refused push's session given up")
	totals := b.sessions()
	t.Logf("bytes_wire %d; sessions' totals %v", r.drep.BytesWire, totals)
	countedOnce(t, "destination", r.drep.BytesWire, totals)
}
