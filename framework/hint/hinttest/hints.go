package hinttest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// answer is what one Hints call produced.
type answer struct {
	ranges  []hint.Range
	batches int
	err     error
	took    time.Duration
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

// hints runs one Hints call under c and fails the test if it has not
// returned within limit.
func (s *session) hints(c context.Context, req hint.Request, limit time.Duration, fail error) answer {
	s.t.Helper()
	rec := &recorder{fail: fail}
	start := time.Now()
	err := within(s.t, "Hints", limit, func() error { return s.p.Hints(c, req, rec.emit) })
	took := time.Since(start)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.ended = true
	return answer{ranges: rec.ranges, batches: rec.batches, err: err, took: took, rec: rec}
}

// hintsWithin runs generation gen with the suite's deadline and checks it
// returned in time.
func (s *session) hintsWithin(gen uint64) answer {
	s.t.Helper()
	dl := time.Now().Add(deadline)
	c, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	a := s.hints(c, hint.Request{Generation: gen, Deadline: dl}, deadline+slack, nil)
	if a.took > deadline+slack {
		s.t.Errorf("generation %d: Hints took %v; its deadline was %v", gen, a.took, deadline)
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
