package rdma

import (
	"context"
	"sync"
	"time"
)

// setupClock is the context of one setup: a source's Open, or a
// destination's wait for one try of it. It ends bound after it
// started, not counting the time it was paused (while this side
// registers guest RAM: verbs pins every page, about a second per GiB of
// fresh memory measured here with mlock, README "Registration and the
// setup's bound"), or when parent ends, or at stop. Err says which:
// context.DeadlineExceeded, parent's error, context.Canceled.
//
// It cannot pause the peer's clock: a source's bound still covers the
// destination's registration, which it waits for in its fabric connect.
type setupClock struct {
	parent context.Context
	done   chan struct{}
	unhook func() bool // stops watching parent

	mu     sync.Mutex
	err    error
	timer  *time.Timer
	due    time.Time     // when it ends, while running
	left   time.Duration // what is left of bound, while paused
	paused bool
}

// startClock starts a setupClock; stop ends it (call it when done).
func startClock(parent context.Context, bound time.Duration) (c *setupClock, stop func()) {
	c = &setupClock{parent: parent, done: make(chan struct{}), due: time.Now().Add(bound)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = time.AfterFunc(bound, func() { c.end(context.DeadlineExceeded) })
	c.unhook = context.AfterFunc(parent, func() { c.end(parent.Err()) })
	return c, func() { c.end(context.Canceled) }
}

func (c *setupClock) end(err error) {
	c.mu.Lock()
	first := c.err == nil
	if first {
		c.err = err
		c.timer.Stop()
		close(c.done)
	}
	c.mu.Unlock()
	if first {
		c.unhook()
	}
}

// pause stops the clock until resume is called; it does nothing once
// the clock ended, or while it is paused already.
func (c *setupClock) pause() (resume func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.paused || !c.timer.Stop() {
		return func() {}
	}
	c.paused, c.left = true, time.Until(c.due)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.paused = false
		if c.err == nil {
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
	if pd, ok := c.parent.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	return d, true
}

// Done implements context.Context.
func (c *setupClock) Done() <-chan struct{} { return c.done }

// Err implements context.Context.
func (c *setupClock) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value implements context.Context: parent's values.
func (c *setupClock) Value(key any) any { return c.parent.Value(key) }
