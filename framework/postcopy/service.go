package postcopy

import (
	"fmt"
	"sync"
	"time"
)

// Actions carry out the page-state machine's decisions on pages
// [first, first+count). The service calls them one at a time, holding its
// lock, so they must be quick: Request must not block on the network
// (queue the request for the goroutine that sends it urgently). An error
// ends the fault service (Run returns it).
type Actions interface {
	Request(first, count uint64) error  // ask the source for the pages on the urgent path
	Zero(first, count uint64) error     // place zero pages (UFFDIO_ZEROPAGE) and wake waiters
	Continue(first, count uint64) error // map landed pages (UFFDIO_CONTINUE) and wake waiters
	Wake(first, count uint64) error     // wake waiters on pages already placed
	Discard(first, count uint64) error  // drop the memfd's copy so the pages read as zero
}

// Service is the destination's fault service: the page-state machine
// (state.go) fed by faults (Run, Fault) and by the transport (Landed,
// Zero) and the engine (Dirtied, Settle), acting through Actions.
//
// Concurrency: every method may be called from any goroutine; events are
// applied, and their actions carried out, one at a time in call order.
type Service struct {
	mu      sync.Mutex
	m       machine
	act     Actions
	waiting map[uint64]time.Time // requested pages: when the first fault was read
	lat     latencies            // every fault resolved
	netLat  latencies            // faults that waited for the network
	st      Stats
	ops     []Op // scratch
	// settled: Settle ran. Its Placed pages need not be mapped yet (they
	// map normally once the range is unregistered), so Populate may no
	// longer skip them (placed).
	settled bool
}

// New returns a service for a guest of pages pages, all Absent.
func New(pages uint64, act Actions) *Service {
	return &Service{m: newMachine(pages), act: act, waiting: make(map[uint64]time.Time)}
}

// Landed reports pages whose data the transport wrote completely into the
// memfd: waiting faults are resolved (CONTINUE), other pages are mapped
// on their first fault. A page the guest already owns is an error.
func (s *Service) Landed(first, count uint64) error {
	return s.run(LandedRun, first, count)
}

// Zero reports pages that a zero or free run covers: faults on them are
// resolved locally (ZEROPAGE), waiting ones at once.
func (s *Service) Zero(first, count uint64) error {
	return s.run(ZeroRun, first, count)
}

// Dirtied reports pages dirtied on the source after they were sent (the
// final dirty set at the switch): they must arrive again, and a fault on
// them waits for the new copy. Only before faults are served.
func (s *Service) Dirtied(first, count uint64) error {
	return s.run(Dirtied, first, count)
}

// Settle ends post-copy: every page must have arrived; zero-known pages
// are discarded from the memfd so that, once the caller unregisters the
// range, every page reads right without userfaultfd.
func (s *Service) Settle() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settled = true
	return s.apply(Settle, 0, uint64(len(s.m.pages)))
}

// Hold seeds pages [first, first+count), all still Absent, as held
// before any fault is served: data already in the memfd (zero false:
// Landed, mapped with CONTINUE on the first fault) or a hole known to
// be zero (zero true: ZeroKnown, ZEROPAGE). It takes one step per run,
// not per page, and carries out no action.
func (s *Service) Hold(first, count uint64, zero bool) error {
	st := Landed
	if zero {
		st = ZeroKnown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.hold(first, count, st)
}

// Pending returns how many pages have not arrived yet (absent or
// requested): post-copy is over when it is 0. It costs a lock, not a
// walk over the pages.
func (s *Service) Pending() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.n[Absent] + s.m.n[Requested]
}

// Reconnect reports that the connection to the source was re-established:
// pages requested before are asked for again (the request or its answer
// may have been lost); the source sends each at most once more.
func (s *Service) Reconnect() error {
	return s.run(Reconnect, 0, uint64(len(s.m.pages)))
}

// Run is Count consecutive pages from First.
type Run struct{ First, Count uint64 }

// Missing returns the pages not held here yet (absent or requested), the
// list a destination sends when it resumes a broken post-copy.
func (s *Service) Missing() []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Run
	for p, st := range s.m.pages {
		if st != Absent && st != Requested {
			continue
		}
		if n := len(out); n > 0 && out[n-1].First+out[n-1].Count == uint64(p) {
			out[n-1].Count++
			continue
		}
		out = append(out, Run{First: uint64(p), Count: 1})
	}
	return out
}

// Fault reports a fault on page p read at time at (Run calls it).
func (s *Service) Fault(p uint64, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p >= uint64(len(s.m.pages)) {
		return fmt.Errorf("%w: fault on page %d, guest has %d", ErrRange, p, len(s.m.pages))
	}
	before := s.m.pages[p]
	s.st.Faults++
	switch before {
	case Absent:
		s.st.PagesRequested++
		s.waiting[p] = at
	case Requested:
		s.st.Duplicate++
	case ZeroKnown:
		s.st.PagesZeroLocal++
	case Landed:
		s.st.PagesLandLocal++
	case Placed:
		s.st.Spurious++
	}
	if err := s.apply(Fault, p, 1); err != nil {
		return err
	}
	if before == ZeroKnown || before == Landed {
		s.lat.add(time.Since(at))
	}
	return nil
}

// placed reports whether pages [first, first+count) all belong to the
// guest and are mapped: never after Settle, which makes pages Placed that
// a user-mode access would still fault on until the caller unregisters
// them; a device thread blocked there in non-preemptible code would hold
// its P (and any garbage collection) against the fault loop.
func (s *Service) placed(first, count uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settled {
		return false
	}
	for p := first; p < first+count; p++ {
		if p >= uint64(len(s.m.pages)) || s.m.pages[p] != Placed {
			return false
		}
	}
	return true
}

// Awaited reports whether every page of [first, first+count) is still
// awaited: Absent or Requested, so that nothing the memfd holds there
// reaches the guest until a landed or zero run reports the page (a
// fault on it is requested, never mapped). A page outside guest RAM is
// not awaited. Only Landed and Zero move an awaited page to another
// state: a caller that alone reports runs, as the engine's landed lane
// does, may trust the answer until its next report.
func (s *Service) Awaited(first, count uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := first; p < first+count; p++ {
		if p >= uint64(len(s.m.pages)) || s.m.pages[p] != Absent && s.m.pages[p] != Requested {
			return false
		}
	}
	return true
}

// State returns page p's state (for tests and diagnostics).
func (s *Service) State(p uint64) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.pages[p]
}

// Stats returns the counters and latency figures so far.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.FaultP50us, st.FaultP99us, st.FaultMaxus = s.lat.percentiles()
	st.NetP50us, st.NetP99us, st.NetMaxus = s.netLat.percentiles()
	n := s.m.count()
	st.Absent, st.Requested, st.ZeroKnown, st.Landed, st.Placed = n[Absent], n[Requested], n[ZeroKnown], n[Landed], n[Placed]
	return st
}

// run applies a run event under the lock.
func (s *Service) run(e Event, first, count uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(e, first, count)
}

// apply moves the pages, carries out the actions in order and, for
// pages that were waiting on the network, records their fault latency.
// s.mu is held.
func (s *Service) apply(e Event, first, count uint64) error {
	ops, err := s.m.apply(e, first, count, s.ops[:0])
	s.ops = ops[:0]
	for _, op := range ops {
		if aerr := s.do(op); aerr != nil {
			return fmt.Errorf("%v pages %d+%d on %v: %w", op.Action, op.First, op.Count, e, aerr)
		}
		if e == LandedRun || e == ZeroRun { // a Continue or Zero here resolves Requested pages
			s.resolved(op)
		}
	}
	return err
}

func (s *Service) do(op Op) error {
	switch op.Action {
	case Request:
		return s.act.Request(op.First, op.Count)
	case Zero:
		return s.act.Zero(op.First, op.Count)
	case Continue:
		return s.act.Continue(op.First, op.Count)
	case Wake:
		return s.act.Wake(op.First, op.Count)
	case Discard:
		return s.act.Discard(op.First, op.Count)
	}
	return fmt.Errorf("%w: action %v", ErrTransition, op.Action)
}

// resolved records the latency of the waiting pages op placed.
func (s *Service) resolved(op Op) {
	now := time.Now()
	for p := op.First; p < op.First+op.Count; p++ {
		if at, ok := s.waiting[p]; ok {
			s.lat.add(now.Sub(at))
			s.netLat.add(now.Sub(at))
			delete(s.waiting, p)
		}
	}
}
