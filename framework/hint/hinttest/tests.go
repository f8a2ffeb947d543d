package hinttest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// testInfo: Info needs no Configure, is stable, and names a usable
// provider with a valid meaning.
func testInfo(t *testing.T, s *session) {
	var a, b hint.Info
	err := within(t, "Info", opTimeout+slack, func() (err error) {
		if a, err = s.p.Info(ctx(t)); err == nil {
			b, err = s.p.Info(ctx(t))
		}
		return err
	})
	if err != nil {
		t.Fatalf("Info before Configure: %v", err)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("Info %+v: %v", a, err)
	}
	if a != b {
		t.Errorf("Info changed between calls: %+v, then %+v", a, b)
	}
}

// testSchema: the schema is well formed, leaves `deadline` to the engine,
// and the test's configuration decodes against it.
func testSchema(t *testing.T, s *session) {
	var sch hint.Schema
	err := within(t, "Schema", opTimeout+slack, func() (err error) {
		sch, err = s.p.Schema(ctx(t))
		return err
	})
	if err != nil {
		t.Fatalf("Schema before Configure: %v", err)
	}
	if err := sch.Validate(); err != nil {
		t.Errorf("Schema: %v", err)
	}
	for _, a := range sch {
		if a.Name == "deadline" {
			t.Errorf("the schema declares %q: every hint block has it, and the engine handles it", a.Name)
		}
	}
	if again, err := s.p.Schema(ctx(t)); err != nil || !reflect.DeepEqual(again, sch) {
		t.Errorf("Schema changed between calls: %v (%v)", again, err)
	}
	s.config()
}

// testValidate: the test's configuration passes the provider's own checks
// (hint.Validate: nil when it has none), before any Configure, twice, in
// time; problems it reports are ErrBadConfig.
func testValidate(t *testing.T, s *session) {
	cfg := s.config()
	for range 2 {
		err := within(t, "Validate", opTimeout+slack, func() error { return hint.Validate(ctx(t), s.p, cfg) })
		if err != nil {
			t.Fatalf("Validate of the test's configuration, before Configure: %v", err)
		}
	}
}

// testHints: three generations, each answered within its deadline, with
// ranges inside RAM (and zero, for MeaningZero).
func testHints(t *testing.T, s *session) {
	m := s.meaning()
	s.configure()
	var as []answer
	for gen := uint64(1); gen <= 3; gen++ {
		a := s.hintsWithin(gen)
		s.checkRanges(fmt.Sprintf("generation %d", gen), a.ranges, m)
		as = append(as, a)
	}
	s.close(true)
	time.Sleep(50 * time.Millisecond) // room for late emits
	s.checkLate(as...)
}

// testCancel: Hints returns soon after its context is cancelled, long
// before its deadline.
func testCancel(t *testing.T, s *session) {
	s.configure()
	const after = 100 * time.Millisecond
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	stop := time.AfterFunc(after, cancel)
	defer stop.Stop()
	a := s.hints(c, hint.Request{Generation: 1, Deadline: time.Now().Add(opTimeout)}, nil)
	if a.late > slack {
		t.Errorf("Hints returned %v after its context was cancelled", a.late)
	}
	if a.err != nil && !(ended(c) && ctxErr(a.err)) {
		t.Errorf("Hints = %v; want nil, or the context's error once it was cancelled", a.err)
	}
	s.checkRanges("cancelled request", a.ranges, s.meaning())
}

// testEmitError: once emit fails, Hints returns that error (errors.Is),
// within the deadline.
func testEmitError(t *testing.T, s *session) {
	s.configure()
	stopped := errors.New("hinttest: the engine stopped listening")
	dl := time.Now().Add(deadline)
	c, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	a := s.hints(c, hint.Request{Generation: 1, Deadline: dl}, stopped)
	if a.batches > 0 && !errors.Is(a.err, stopped) {
		t.Errorf("emit failed, then Hints = %v; want emit's error (wrapped with %%w)", a.err)
	}
	if a.batches > 1 {
		t.Errorf("emit failed, yet Hints called it %d more times", a.batches-1)
	}
}

// testClose: Close(final) before any Configure, and twice at the end of
// a window (after a Close(false)), returns nil.
func testClose(t *testing.T, s *session) {
	s.close(true)
	s.configure()
	s.hintsWithin(1)
	s.close(false)
	s.close(true)
	s.close(true)
}

// testCloseDuringHints: Close may interrupt a running Hints; Close returns
// and so does Hints, by its deadline.
func testCloseDuringHints(t *testing.T, s *session) {
	m := s.meaning()
	s.configure()
	const long = 2 * time.Second
	dl := time.Now().Add(long)
	c, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	closed := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		cc, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		closed <- s.p.Close(cc, true)
	}()
	a := s.hints(c, hint.Request{Generation: 1, Deadline: dl}, nil)
	s.checkRanges("interrupted request", a.ranges, m)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close(final) during Hints: %v", err)
		}
	case <-time.After(opTimeout + slack):
		t.Fatalf("Close(final) during Hints still running after %v", opTimeout)
	}
}

// testReconfigure: after Close(final), a second window works.
func testReconfigure(t *testing.T, s *session) {
	m := s.meaning()
	for window := range 2 {
		s.configure()
		a := s.hintsWithin(1)
		s.checkRanges(fmt.Sprintf("window %d", window+1), a.ranges, m)
		s.close(true)
	}
}

// testHostNotSupported: with a VMM that offers no capability, Configure
// succeeds and Hints either succeeds or says ErrNotSupported with nothing
// emitted.
func testHostNotSupported(t *testing.T, s *session) {
	m := s.meaning()
	s.configureWith(&hint.MockHost{})
	for gen := uint64(1); gen <= 2; gen++ {
		dl := time.Now().Add(deadline)
		c, cancel := context.WithDeadline(context.Background(), dl)
		a := s.hints(c, hint.Request{Generation: gen, Deadline: dl}, nil)
		over := ended(c)
		cancel()
		switch {
		case a.err == nil, over && ctxErr(a.err):
		case errors.Is(a.err, hint.ErrNotSupported):
			if len(a.ranges) > 0 {
				t.Errorf("generation %d: Hints said ErrNotSupported but emitted %d ranges", gen, len(a.ranges))
			}
		default:
			t.Errorf("generation %d: Hints with a host that supports nothing = %v; want nil or ErrNotSupported", gen, a.err)
		}
		s.checkRanges("without capabilities", a.ranges, m)
	}
	s.close(true)
}
