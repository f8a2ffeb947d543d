package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// releasedAtClose is the destination's transport whose first session,
// once LOADED went out, keeps back what its landed lane would report and
// hands it over only after the session's close began, late (lateRelease:
// a launched plugin's last reports crossing to the host after its
// session ended): the runs recorded before the end come first, then the
// end (transport.Transport's Landed). Reports the inner transport still
// queued die with the session. What a Landed call begun before LOADED
// gets after it is kept back too, so that a push that lands whole while
// that call waits is not reported on time. (Nothing lands between LOADED
// and COMMIT: the bulk pass's reports were drained before LOADED, the
// source pushes only once RUNNING answered its COMMIT, and the guest
// faults only once it runs. Marked at COMMIT's arrival instead, a push
// could land and be reported before the mark.) The destination's stall
// watch takes the session for dead with its connection up, closes it
// first (closeSession) and only then drains the lane, which now delivers
// pages that landed in the dead session.
//
// It records what would let such a page be placed twice: whether the
// first session's lane was still in a Landed call, or had not yet seen
// its end, when MISSING went out (MISSING must be computed after the
// lane ended), and each page reported after LOADED on any session (one
// reported twice was taken from the old lane and named in MISSING too,
// sent again and written over a page the guest may own by then).
type releasedAtClose struct {
	transport.Transport
	loaded  atomic.Bool   // LOADED went out
	closing chan struct{} // closed as the first session's Close begins

	mu       sync.Mutex
	sessions int
	kept     []transport.PageRun
	released uint64         // pages handed over after the close began
	reported map[uint64]int // pages reported after LOADED, on any session
	// The first session's lane: its Landed calls under way, and
	// whether one returned the session's end.
	firstCalls int
	firstEnded bool
	missingAt  string // "" until MISSING went out; then "ended" or what was not
}

// lateRelease is how long after the close began releasedAtClose hands
// over what it kept: a destination that does not wait for its old lane
// sends MISSING meanwhile.
const lateRelease = 300 * time.Millisecond

func (h *releasedAtClose) Open(ctx context.Context, req transport.OpenRequest) error {
	h.mu.Lock()
	h.sessions++
	h.mu.Unlock()
	return h.Transport.Open(ctx, req)
}

func (h *releasedAtClose) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgLoaded {
		h.loaded.Store(true)
	}
	if m.Kind == msgMissing {
		h.mu.Lock()
		if h.missingAt == "" {
			switch {
			case h.firstCalls > 0:
				h.missingAt = "the old session's landed lane was in a Landed call"
			case !h.firstEnded:
				h.missingAt = "the old session's landed lane had not seen its end"
			default:
				h.missingAt = "ended"
			}
		}
		h.mu.Unlock()
	}
	return h.Transport.SendMessage(ctx, m)
}

// Landed is called by the destination's landed lanes (one per session).
func (h *releasedAtClose) Landed(ctx context.Context) ([]transport.PageRun, error) {
	h.mu.Lock()
	first := h.sessions == 1
	if first {
		h.firstCalls++
	}
	h.mu.Unlock()
	runs, err := h.landed(ctx, first)
	h.note(runs)
	if first {
		h.mu.Lock()
		h.firstCalls--
		h.firstEnded = h.firstEnded || err != nil && ctx.Err() == nil
		h.mu.Unlock()
	}
	return runs, err
}

// landed is Landed; first (a call of the first session) keeps what lands
// from LOADED on until the close begins.
func (h *releasedAtClose) landed(ctx context.Context, first bool) ([]transport.PageRun, error) {
	select {
	case <-h.closing:
		if runs := h.handOver(); len(runs) > 0 {
			t := time.NewTimer(lateRelease)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			h.mu.Lock()
			h.released += uint64(pagesOf(runs))
			h.mu.Unlock()
			return runs, nil
		}
		first = false
	default:
	}
	if !first || !h.loaded.Load() {
		runs, err := h.Transport.Landed(ctx)
		if err != nil || !first || !h.loaded.Load() {
			return runs, err
		}
		h.keep(runs) // LOADED went out while the call waited
		return h.landed(ctx, true)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.closing:
			cancel()
		case <-lctx.Done():
		}
	}()
	for {
		runs, err := h.Transport.Landed(lctx)
		h.keep(runs)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return h.landed(ctx, true) // closing: hand over what was kept
		}
	}
}

// keep keeps runs back until the close begins.
func (h *releasedAtClose) keep(runs []transport.PageRun) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kept = append(h.kept, runs...)
}

// handOver takes what was kept.
func (h *releasedAtClose) handOver() []transport.PageRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	runs := h.kept
	h.kept = nil
	return runs
}

func pagesOf(runs []transport.PageRun) int {
	n := 0
	for _, r := range runs {
		n += int(r.Count)
	}
	return n
}

// note counts the pages of runs reported after LOADED.
func (h *releasedAtClose) note(runs []transport.PageRun) {
	if !h.loaded.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reported == nil {
		h.reported = map[uint64]int{}
	}
	for _, r := range runs {
		for p := r.First; p < r.First+r.Count; p++ {
			h.reported[p]++
		}
	}
}

func (h *releasedAtClose) Close() error {
	h.mu.Lock()
	if h.sessions == 1 {
		select {
		case <-h.closing:
		default:
			close(h.closing)
		}
	}
	h.mu.Unlock()
	return h.Transport.Close()
}

// TestPostcopyLaneReleasedByCloseNotMissing: the reports of pages that
// landed in a session the destination took for dead reach its landed
// lane only after that session's close began, and late (closeSession
// first, then the lane is drained: 44139d9). The lane must have ended
// before MISSING goes out, so those pages are landed, not MISSING: none
// is sent again and reported twice, and the migration completes
// page-exact. A destination that sent MISSING before its old lane ended
// would name pages the lane then hands over, and the source would write
// them again, over a page the guest may own by then. Passed when written
// (coverage of the close-first order; with the wait for the old lane
// removed from reconnect it fails on the lane not ended). The source's
// transport writes a page during the bulk pass (dirtyBulk), so that
// post-copy owes one whatever the guest's writer did: with none owed, or
// a push that landed whole while a Landed call begun before COMMIT
// waited (reported by it, on time), the destination completed without a
// reconnect (3 of 300 runs, before, reported as "MISSING went out before
// the old session's landed lane ended: " with no MISSING sent).
func TestPostcopyLaneReleasedByCloseNotMissing(t *testing.T) {
	h := &releasedAtClose{closing: make(chan struct{})}
	b := &dirtyBulk{}
	r, dst := bothEnginesWrapped(t, b.wrap, func(dtr transport.Transport) transport.Transport { h.Transport = dtr; return h },
		func(sopt, dopt *Options) {
			sopt.StallTimeout, dopt.StallTimeout = 2*time.Minute, time.Second
		})
	h.mu.Lock()
	released, missingAt := h.released, h.missingAt
	var twice []uint64
	for p, n := range h.reported {
		if n > 1 && len(twice) < 8 {
			twice = append(twice, p)
		}
	}
	h.mu.Unlock()
	b.owedSent(t)
	switch {
	case missingAt == "":
		t.Fatalf("no MISSING went out, no reconnect: the test proves nothing; destination %s (%v), %d reconnects",
			r.drep.Status, r.derr, r.drep.Reconnects)
	case missingAt != "ended":
		t.Fatalf("MISSING went out before the old session's landed lane ended: %s", missingAt)
	}
	if released == 0 {
		t.Fatalf("no report was handed over after the close began: the test proves nothing; destination %s (%v)", r.drep.Status, r.derr)
	}
	t.Logf("%d pages reported only after the dead session's close began", released)
	if len(twice) > 0 {
		t.Errorf("pages reported again after the old lane handed them over (MISSING named them): %v", twice)
	}
	completedAfter(t, r, b.src, dst, 1, "MISSING named what the closed session did not report")
}
