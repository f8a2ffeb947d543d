package hinttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// answer is what one Hints call produced.
type answer struct {
	ranges  []hint.Range
	batches int
	err     error
	took    time.Duration
	late    time.Duration // how long after its context ended it returned; 0: before
	rec     *recorder
}

// recorder is the emit function of one call: it keeps the ranges, and
// counts emits after Hints returned (a provider goroutine left behind).
type recorder struct {
	mu      sync.Mutex
	ranges  []hint.Range
	batches int
	ended   bool
	late    int
	fail    error // returned by every emit; nil: accept
}

func (r *recorder) emit(rs []hint.Range) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		r.late++
		return errors.New("hinttest: emit after Hints returned")
	}
	r.batches++
	r.ranges = append(r.ranges, rs...)
	return r.fail
}

// Late is how many emits came after Hints returned.
func (r *recorder) Late() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.late
}

// hints runs one Hints call under c and fails the test at once if it
// has not returned slack after c ended, saying how long after. The
// slack counts from when this process saw c end (its AfterFunc ran),
// not from c's deadline: a loaded machine that holds this process past
// the deadline holds the provider too, and that is no fault of its.
func (s *session) hints(c context.Context, req hint.Request, fail error) answer {
	s.t.Helper()
	rec := &recorder{fail: fail}
	start := time.Now()
	var endedAfter atomic.Int64 // when c ended, since start; 0: not yet
	endedc := make(chan struct{})
	stop := context.AfterFunc(c, func() {
		endedAfter.Store(int64(max(time.Since(start), 1)))
		close(endedc)
	})
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.p.Hints(c, req, rec.emit) }()
	timer := time.NewTimer(opTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-endedc:
		timer.Reset(slack)
		select {
		case err = <-done:
		case <-timer.C: // the call's goroutine is left behind: the provider hangs
			s.t.Fatal(overdue(c, time.Since(start), time.Duration(endedAfter.Load())))
		}
	case <-timer.C:
		s.t.Fatal(overdue(c, time.Since(start), time.Duration(endedAfter.Load())))
	}
	took := time.Since(start)
	var late time.Duration
	if e := time.Duration(endedAfter.Load()); e > 0 {
		late = took - e
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.ended = true
	return answer{ranges: rec.ranges, batches: rec.batches, err: err, took: took, late: late, rec: rec}
}

// overdue says why a Hints call still running took after it began,
// under c, which ended endedAfter after it began (0: not yet), breaks
// the contract.
func overdue(c context.Context, took, endedAfter time.Duration) string {
	ms := time.Millisecond
	if endedAfter == 0 {
		return fmt.Sprintf("Hints still running after %v", took.Round(ms))
	}
	how := "its deadline (Request.Deadline)"
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		how = "its context was cancelled"
	}
	return fmt.Sprintf("Hints still running %v after %s, %v after the call began: a provider's Hints must "+
		"return when its context ends (the suite allows %v), by Request.Deadline at the latest; "+
		"req.Context(ctx, 0) ends in time to answer", (took - endedAfter).Round(ms), how, endedAfter.Round(ms), slack)
}

// hintsWithin runs generation gen with the suite's deadline and checks it
// returned in time.
func (s *session) hintsWithin(gen uint64) answer {
	s.t.Helper()
	dl := time.Now().Add(deadline)
	c, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	a := s.hints(c, hint.Request{Generation: gen, Deadline: dl}, nil)
	if a.late > slack {
		s.t.Errorf("generation %d: Hints took %v, %v after its deadline (%v) ended its context",
			gen, a.took, a.late, deadline)
	}
	if a.err != nil && !(ended(c) && ctxErr(a.err)) {
		s.t.Errorf("generation %d: Hints = %v; want nil, or the context's error once it ended", gen, a.err)
	}
	return a
}

// ended reports whether c has ended, or is about to: its deadline has
// passed (a plugin's timer for the same deadline may fire first).
func ended(c context.Context) bool {
	dl, ok := c.Deadline()
	return c.Err() != nil || ok && !time.Now().Before(dl)
}

func ctxErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// checkRanges fails the test for ranges outside RAM and, for MeaningZero
// providers, for pages that do not read as zero.
func (s *session) checkRanges(what string, rs []hint.Range, m hint.Meaning) {
	s.t.Helper()
	pages := s.ram.Pages()
	ok, dropped := hint.CheckRanges(rs, pages)
	if dropped > 0 {
		bad := 0
		for _, r := range rs {
			if err := r.Check(pages); err != nil {
				if bad++; bad <= 5 {
					s.t.Errorf("%s: %v", what, err)
				}
			}
		}
		s.t.Errorf("%s: %d of %d ranges lie outside guest RAM", what, dropped, len(rs))
	}
	if m != hint.MeaningZero {
		return
	}
	bad := 0
	seen := make([]bool, pages) // duplicates and overlaps are read once
	for _, r := range ok {
		for p := r.First; p < r.First+r.Count; p++ {
			if seen[p] {
				continue
			}
			seen[p] = true
			if !s.ram.Zero(p) {
				if bad++; bad <= 5 {
					s.t.Errorf("%s: page %d reported zero holds data", what, p)
				}
			}
		}
	}
	if bad > 5 {
		s.t.Errorf("%s: %d pages reported zero hold data", what, bad)
	}
}

// checkLate fails the test if the provider emitted after a Hints call
// returned (in process; over gRPC the plugin side refuses those).
func (s *session) checkLate(as ...answer) {
	s.t.Helper()
	for _, a := range as {
		if n := a.rec.Late(); n > 0 {
			s.t.Errorf("the provider called emit %d times after Hints returned", n)
		}
	}
}
