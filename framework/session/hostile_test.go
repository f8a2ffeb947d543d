package session_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/session"
)

// hostileProvider abuses everything it is given: from Configure on, four
// goroutines call the VMM's balloon without a deadline, over and over,
// for as long as the process lives (after Hints returned, after Close);
// Hints emits the largest batches the protocol carries, every range the
// same, until its context ends; Close never sends DONE.
func hostileProvider() hint.Provider {
	var once sync.Once
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "hostile", Version: "test", Meaning: hint.MeaningFree}, nil
		},
		SchemaFunc: func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(_ context.Context, _ hint.Config, vm hint.VM, h hint.Host) error {
			once.Do(func() {
				for range 4 {
					go func() {
						for {
							h.BalloonHint(context.Background())
						}
					}()
				}
			})
			return nil
		},
		HintsFunc: func(ctx context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			batch := make([]hint.Range, 32768)
			for i := range batch {
				batch[i] = hint.Range{First: 8, Count: 4} // the balloon's pages, 32768 times
			}
			for ctx.Err() == nil {
				if err := emit(batch); err != nil {
					return err
				}
			}
			return ctx.Err()
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// countingHost is balloonHost that also says whether the guest holds
// hinted blocks (a session came after the last DONE).
type countingHost struct {
	balloonHost
	mu   sync.Mutex
	open bool
}

func (h *countingHost) BalloonHint(ctx context.Context) ([]hint.GPARange, error) {
	h.mu.Lock()
	h.open = true
	h.mu.Unlock()
	return h.balloonHost.BalloonHint(ctx)
}

func (h *countingHost) BalloonDone(ctx context.Context) error {
	h.mu.Lock()
	h.open = false
	h.mu.Unlock()
	return h.balloonHost.BalloonDone(ctx)
}

func (h *countingHost) isOpen() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.open }

// TestHostileProvider: a provider that calls the VMM's balloon in a
// loop from several goroutines, floods ranges and never sends DONE
// costs the migration nothing (completed, pages equal, within its
// deadlines); once Send returned the VMM gets no more calls and the
// guest holds no hinted block; after Close no process, file or
// goroutine is left.
func TestHostileProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes")
	}
	hostile := provider("hostile", "ferry-hint-hostile")
	hostile.Deadline = 200 * time.Millisecond
	p := newPair(t, hostile)
	p.send.Engine.HintHold = 5 * time.Second
	src, dst := p.src, p.dst
	host := &countingHost{balloonHost: balloonHost{free: []hint.GPARange{{GPA: 8 * page, Size: 4 * page}}}}
	lk := startLeakCheck(t)
	got := p.receive(t)
	start := time.Now()
	s, err := session.Open(context.Background(), src.RAM(), p.send)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Send(context.Background(), src, host)
	took := time.Since(start)
	hints, done := host.calls()
	open := host.isOpen()
	if r := <-got; err != nil || r.err != nil || rep.Status != engine.StatusCompleted {
		t.Fatalf("send: %v (%s); receive: %v", err, rep.Status, r.err)
	}
	t.Logf("%v; the VMM got %d BalloonHint, %d BalloonDone; hints %+v", took, hints, done, rep.Hints)
	if took > 15*time.Second {
		t.Errorf("the migration took %v", took)
	}
	if open || done == 0 {
		t.Errorf("when Send returned the guest held hinted blocks (%v; %d DONE)", open, done)
	}
	s.Close()
	time.Sleep(200 * time.Millisecond)
	if h, d := host.calls(); h != hints || d != done {
		t.Errorf("the VMM got %d BalloonHint, %d BalloonDone after Send returned", h-hints, d-done)
	}
	// The balloon's pages arrive as zero if the hints came in time (a
	// plugin built with -race may miss its deadline), every other page equal.
	free := []uint64{8, 9, 10, 11}
	if rep.PagesSkipped == 0 {
		free = nil
	}
	checkRAM(t, src, dst, free)
	lk.check(t)
}

// badInfoProvider says it is a provider of no defined meaning (0), and
// calls every page of RAM skippable.
func badInfoProvider() hint.Provider {
	return &hint.Mock{
		InfoFunc: func(context.Context) (hint.Info, error) {
			return hint.Info{Name: "badinfo", Version: "test"}, nil
		},
		SchemaFunc:    func(context.Context) (hint.Schema, error) { return nil, nil },
		ConfigureFunc: func(context.Context, hint.Config, hint.VM, hint.Host) error { return nil },
		HintsFunc: func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
			return emit([]hint.Range{{First: 0, Count: 96}})
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// TestBadInfo is invariant 2 for a provider's description: one whose
// Info does not validate (here: no meaning, so nothing says how far its
// ranges may be trusted) is malformed, and costs its hints: it is
// reported failed at its start and skips no page. Before, its ranges
// were applied as if it had said "free": every page it named arrived as
// zero, unchecked.
func TestBadInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts plugin processes")
	}
	badinfo := provider("badinfo", "ferry-hint-badinfo")
	badinfo.Deadline = time.Second
	p := newPair(t, badinfo)
	p.send.Engine.HintHold = 5 * time.Second
	src, dst := p.src, p.dst
	got := p.receive(t)
	rep, err := session.Send(context.Background(), src, nil, p.send)
	if r := <-got; err != nil || r.err != nil {
		t.Fatalf("send: %v; receive: %v", err, r.err)
	}
	checkHints(t, rep, map[string]string{"badinfo": "failed: "})
	if rep.PagesSkipped != 0 || rep.Hints[0].Stage != engine.StageStart {
		t.Errorf("%d pages skipped; %+v", rep.PagesSkipped, rep.Hints[0])
	}
	checkRAM(t, src, dst, nil)
}
