package postcopy

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fakeActions records every action as "action first+count".
type fakeActions struct{ calls []string }

func (f *fakeActions) rec(a Action, first, count uint64) error {
	f.calls = append(f.calls, fmt.Sprintf("%v %d+%d", a, first, count))
	return nil
}
func (f *fakeActions) Request(first, count uint64) error  { return f.rec(Request, first, count) }
func (f *fakeActions) Zero(first, count uint64) error     { return f.rec(Zero, first, count) }
func (f *fakeActions) Continue(first, count uint64) error { return f.rec(Continue, first, count) }
func (f *fakeActions) Wake(first, count uint64) error     { return f.rec(Wake, first, count) }
func (f *fakeActions) Discard(first, count uint64) error  { return f.rec(Discard, first, count) }

// take returns the calls since the last take.
func (f *fakeActions) take() []string {
	c := f.calls
	f.calls = nil
	return c
}

func newFake(pages uint64) (*Service, *fakeActions) {
	f := &fakeActions{}
	return New(pages, f), f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, f *fakeActions, want ...string) {
	t.Helper()
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("actions %q, want %q", got, want)
	}
}

// A page requested while already in flight is not requested twice.
func TestInFlightNotRequestedTwice(t *testing.T) {
	s, f := newFake(8)
	must(t, s.Fault(3, time.Now()))
	expect(t, f, "request 3+1")
	must(t, s.Fault(3, time.Now())) // a second thread, or the same one after a signal
	expect(t, f)
	must(t, s.Landed(3, 1))
	expect(t, f, "continue 3+1")
	st := s.Stats()
	if st.PagesRequested != 1 || st.Duplicate != 1 || st.Faults != 2 || st.Placed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A page dirtied before the switch and faulted after waits for the new
// copy: the old copy in the memfd is never mapped.
func TestDirtiedWaitsForNewCopy(t *testing.T) {
	s, f := newFake(8)
	must(t, s.Landed(0, 8)) // pre-copy
	must(t, s.Zero(6, 2))   // the bulk pass found 6, 7 zero; later they were written
	must(t, s.Dirtied(5, 3))
	expect(t, f)
	must(t, s.Fault(5, time.Now()))
	must(t, s.Fault(7, time.Now()))
	expect(t, f, "request 5+1", "request 7+1")
	must(t, s.Fault(4, time.Now())) // not dirtied: served from the memfd
	expect(t, f, "continue 4+1")
	must(t, s.Landed(5, 3)) // the new copies; 6 nobody faulted on: it waits for its first fault
	expect(t, f, "continue 5+1", "continue 7+1")
	if s.State(6) != Landed || s.State(5) != Placed {
		t.Fatalf("states %v %v", s.State(5), s.State(6))
	}
}

// A zero run arriving after the fault resolves it locally (ZEROPAGE),
// without waiting for the network's answer.
func TestZeroRunAfterFault(t *testing.T) {
	s, f := newFake(8)
	must(t, s.Fault(2, time.Now()))
	expect(t, f, "request 2+1")
	must(t, s.Zero(0, 8))
	expect(t, f, "zero 2+1")
	if s.State(2) != Placed || s.State(3) != ZeroKnown {
		t.Fatalf("states %v %v", s.State(2), s.State(3))
	}
	must(t, s.Fault(3, time.Now()))
	expect(t, f, "zero 3+1")
	st := s.Stats()
	if st.PagesZeroLocal != 1 || st.PagesRequested != 1 || st.FaultMaxus <= 0 {
		t.Fatalf("stats %+v", st)
	}
	// The network's answer for page 2 arrives later: the guest owns the
	// page, so the transport must never have written it.
	if err := s.Landed(2, 1); !errors.Is(err, ErrTransition) {
		t.Fatalf("landed on a placed page: %v, want ErrTransition", err)
	}
}

// A landed page faulted MINOR is CONTINUEd only once fully landed: while
// the transport is still writing it, the fault waits on the request.
func TestContinueOnlyWhenLanded(t *testing.T) {
	s, f := newFake(8)
	must(t, s.Fault(1, time.Now())) // MINOR: part of the page is in the memfd
	expect(t, f, "request 1+1")
	must(t, s.Fault(1, time.Now()))
	expect(t, f)
	must(t, s.Landed(0, 4)) // the transport reports the run complete
	expect(t, f, "continue 1+1")
	must(t, s.Fault(1, time.Now())) // raced with the CONTINUE
	expect(t, f, "wake 1+1")
	must(t, s.Fault(2, time.Now()))
	expect(t, f, "continue 2+1")
}

// Actions on a run are merged into runs of consecutive pages.
func TestRunsMerge(t *testing.T) {
	s, f := newFake(16)
	for _, p := range []uint64{2, 3, 4, 9} {
		must(t, s.Fault(p, time.Now()))
	}
	f.take()
	must(t, s.Landed(0, 16))
	expect(t, f, "continue 2+3", "continue 9+1")
}

// Settle needs every page; zero-known pages are discarded, landed ones
// stay in the memfd.
func TestSettle(t *testing.T) {
	s, _ := newFake(6)
	must(t, s.Landed(0, 2))
	must(t, s.Zero(2, 3))
	if err := s.Settle(); !errors.Is(err, ErrTransition) {
		t.Fatalf("settle with an absent page: %v", err)
	}
	s, f := newFake(6)
	must(t, s.Landed(0, 2))
	must(t, s.Zero(2, 3))
	must(t, s.Fault(5, time.Now()))
	must(t, s.Landed(5, 1))
	f.take()
	must(t, s.Settle())
	expect(t, f, "discard 2+3")
	if st := s.Stats(); st.Placed != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRangeChecked(t *testing.T) {
	s, _ := newFake(4)
	for _, err := range []error{s.Landed(3, 2), s.Zero(5, 1), s.Fault(4, time.Now()), s.Dirtied(1<<63, 1<<63)} {
		if !errors.Is(err, ErrRange) {
			t.Errorf("%v, want ErrRange", err)
		}
	}
}

// An action that fails ends with an error naming the pages.
func TestActionError(t *testing.T) {
	s := New(4, &failing{})
	if err := s.Fault(1, time.Now()); err == nil || !errors.Is(err, errNet) {
		t.Fatalf("%v", err)
	}
}

var errNet = errors.New("network down")

type failing struct{ fakeActions }

func (failing) Request(uint64, uint64) error { return errNet }

// After a reconnect, pages in flight are asked for again, and the
// missing list names exactly the pages not held.
func TestReconnect(t *testing.T) {
	s, f := newFake(8)
	must(t, s.Landed(0, 2))
	must(t, s.Zero(6, 2))
	must(t, s.Fault(3, time.Now()))
	must(t, s.Fault(4, time.Now()))
	must(t, s.Landed(4, 1))
	f.take()
	if got, want := s.Missing(), []Run{{2, 2}, {5, 1}}; !slices.Equal(got, want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	must(t, s.Reconnect())
	expect(t, f, "request 3+1")
	must(t, s.Landed(3, 1))
	expect(t, f, "continue 3+1")
}

// The per-state counts follow every move, and Hold seeds runs of
// Absent pages only.
func TestCountsAndHold(t *testing.T) {
	s, f := newFake(10)
	must(t, s.Hold(0, 3, false))
	must(t, s.Hold(5, 2, true))
	if err := s.Hold(2, 2, false); !errors.Is(err, ErrTransition) {
		t.Fatalf("hold over a held page: %v", err)
	}
	if s.State(3) != Absent {
		t.Fatal("a failed hold moved pages")
	}
	if err := s.Hold(9, 2, false); !errors.Is(err, ErrRange) {
		t.Fatalf("hold past the end: %v", err)
	}
	if n := s.Pending(); n != 5 {
		t.Fatalf("pending %d, want 5", n)
	}
	must(t, s.Fault(1, time.Now()))
	must(t, s.Fault(5, time.Now()))
	must(t, s.Fault(8, time.Now()))
	expect(t, f, "continue 1+1", "zero 5+1", "request 8+1")
	must(t, s.Landed(8, 2))
	st := s.Stats()
	if s.Pending() != 3 || st.Absent != 3 || st.Landed != 3 || st.Placed != 3 || st.ZeroKnown != 1 || st.Requested != 0 {
		t.Fatalf("pending %d, stats %+v", s.Pending(), st)
	}
}

// TestNetLatency: the network percentiles count only faults that waited
// for a landed or zero run; local faults count in the overall ones.
func TestNetLatency(t *testing.T) {
	s := New(4, &fakeActions{})
	if err := s.Zero(2, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Landed(0, 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []uint64{0, 2, 3} { // local: landed, zero-known
		if err := s.Fault(p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Fault(1, time.Now().Add(-5*time.Millisecond)); err != nil { // waits for the network
		t.Fatal(err)
	}
	if err := s.Landed(1, 1); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.NetMaxus < 5000 || st.NetP50us < 5000 {
		t.Errorf("network latency %v/%v us, want >= 5000 (the one requested fault)", st.NetP50us, st.NetMaxus)
	}
	if st.FaultP50us >= 5000 || st.FaultMaxus < 5000 {
		t.Errorf("overall p50 %v us, max %v us: want the local fault in the median and the network one as max", st.FaultP50us, st.FaultMaxus)
	}
}

// Awaited is true only for runs whose every page is Absent or Requested
// (nothing of the memfd reaches the guest there before a report), false
// as soon as one is ZeroKnown, Landed or Placed, or past the end.
func TestAwaited(t *testing.T) {
	s, _ := newFake(8)
	must(t, s.Hold(0, 1, false)) // 0 landed
	must(t, s.Hold(1, 1, true))  // 1 zero-known
	must(t, s.Fault(3, time.Now()))
	must(t, s.Landed(5, 1))
	must(t, s.Fault(5, time.Now())) // 5 placed
	for _, c := range []struct {
		first, count uint64
		want         bool
	}{
		{2, 1, true}, {2, 2, true}, {3, 1, true}, {6, 2, true}, // absent, requested
		{0, 1, false}, {1, 1, false}, {5, 1, false}, {2, 4, false}, {4, 2, false},
		{7, 2, false}, {8, 1, false},
	} {
		if got := s.Awaited(c.first, c.count); got != c.want {
			t.Errorf("Awaited(%d, %d) = %v, want %v", c.first, c.count, got, c.want)
		}
	}
}
