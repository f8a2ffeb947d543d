package postcopy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/ferryvm/ferry/framework/internal/uffd"
)

// Faults is where the fault loop reads faults; *uffd.FD implements it.
type Faults interface {
	Wait(timeout time.Duration) error
	Read(buf []uffd.Event) (int, error)
	Interrupt()
}

// Run is the fault loop: it reads faults from f, maps their addresses to
// pages through m and applies them, until ctx ends (it returns
// ctx.Err()) or something fails (it returns the error). Call it on a
// goroutine of its own: it locks that goroutine to its OS thread, so no
// thread that may block on a fault ever has to run it. It never reads or
// writes guest RAM: it sees addresses and calls Actions.
//
// ctx's end interrupts f for good; one Run per f. After an error, threads
// may still wait on faults: stop the guest before closing f, because
// closing it wakes them onto holes that read as zero.
func (s *Service) Run(ctx context.Context, f Faults, m Mapping) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stop := context.AfterFunc(ctx, f.Interrupt)
	defer stop()
	buf := make([]uffd.Event, 64)
	for {
		err := f.Wait(-1)
		if errors.Is(err, uffd.ErrStopped) {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("fault loop: %w", err)
		}
		n, err := f.Read(buf)
		if err != nil {
			return fmt.Errorf("fault loop: %w", err)
		}
		at := time.Now()
		for _, e := range buf[:n] {
			if err := s.event(e, m, at); err != nil {
				return fmt.Errorf("fault loop: %w", err)
			}
		}
	}
}

// event applies one userfaultfd event.
func (s *Service) event(e uffd.Event, m Mapping, at time.Time) error {
	if e.Kind != uffd.EventPagefault {
		return fmt.Errorf("unexpected userfaultfd event %#x", e.Kind)
	}
	p, ok := m.Page(e.Address)
	if !ok {
		return fmt.Errorf("%w: fault at %#x is outside the registered guest RAM", ErrRange, e.Address)
	}
	return s.Fault(p, at)
}
