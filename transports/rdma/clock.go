package rdma

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// setupClock is the context of one setup: a source's Open, or a
// destination's wait for one try of it. It ends bound after it
// started, not counting the time it was paused (while this side
// registers guest RAM: verbs pins every page, 0.2-2.5 s per GiB of
// fresh memory here by mlock as a stand-in, README "Registration and
// the setup's bound"), or when parent ends (at once: it is a child of
// parent), or at stop. Err says which: context.DeadlineExceeded,
// parent's error, context.Canceled; expired tells the first from a
// parent's deadline. Contexts derived from it end with it; once its
// bound passed they say context.Canceled, and context.Cause says
// errBoundPassed (a context.DeadlineExceeded).
//
// It cannot pause the peer's clock: a source's bound still covers the
// destination's registration, which it waits for in its fabric connect.
// libfabric's first use in the process is not paused for: it is waited
// for before the clock starts (awaitLibfabric).
type setupClock struct {
	context.Context // a child of parent, cancelled when the clock ends
	cancel          context.CancelCauseFunc
	bound           time.Duration

	mu     sync.Mutex
	timer  *time.Timer
	due    time.Time     // when it ends, while running
	left   time.Duration // what is left of bound, while paused
	paused bool
}

// startClock starts a setupClock; stop ends it (call it when done).
func startClock(parent context.Context, bound time.Duration) (c *setupClock, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	c = &setupClock{Context: ctx, cancel: cancel, bound: bound, due: time.Now().Add(bound)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = time.AfterFunc(bound, func() { cancel(errBoundPassed) })
	return c, func() {
		c.mu.Lock()
		c.timer.Stop()
		c.mu.Unlock()
		cancel(context.Canceled)
	}
}

// pause stops the clock until resume is called; it does nothing once
// the clock ended, or while it is paused already.
func (c *setupClock) pause() (resume func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Context.Err() != nil || c.paused || !c.timer.Stop() {
		return func() {}
	}
	c.paused, c.left = true, time.Until(c.due)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.paused = false
		if c.Context.Err() == nil {
			c.due = time.Now().Add(c.left)
			c.timer.Reset(c.left)
		}
	}
}

// Deadline implements context.Context: when the clock would end if not
// paused again, or parent's deadline if that is earlier.
func (c *setupClock) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d := c.due
	if c.paused {
		d = time.Now().Add(c.left)
	}
	c.mu.Unlock()
	if pd, ok := c.Context.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	return d, true
}

// errBoundPassed is a setupClock's cause once its bound passed.
var errBoundPassed = fmt.Errorf("the setup's bound passed: %w", context.DeadlineExceeded)

// expired reports whether the clock ended because its bound passed
// (not its parent, nor stop).
func (c *setupClock) expired() bool {
	return c.Context.Err() != nil && context.Cause(c.Context) == errBoundPassed
}

// Err implements context.Context: context.DeadlineExceeded once the
// bound passed.
func (c *setupClock) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}
