package rdma

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSetupClock: a setupClock ends bound after it started, not counting
// its pauses, with context.DeadlineExceeded; it ends with its parent
// (the parent's error) and at stop (context.Canceled); contexts derived
// from it end with it.
func TestSetupClock(t *testing.T) {
	const bound = 200 * time.Millisecond
	waitDone := func(t *testing.T, c *setupClock) {
		t.Helper()
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the clock did not end within 10 s")
		}
	}
	t.Run("bound", func(t *testing.T) {
		start := time.Now()
		c, stop := startClock(context.Background(), bound)
		defer stop()
		child, cancel := context.WithCancel(c)
		defer cancel()
		<-child.Done()
		if d := time.Since(start); d < bound || !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("ended after %v with %v; want at least %v, DeadlineExceeded", d, c.Err(), bound)
		}
		if !c.expired() {
			t.Error("expired = false after the bound passed")
		}
		if dl, ok := c.Deadline(); !ok || dl.Before(start.Add(bound)) {
			t.Errorf("Deadline %v, %v; want %v", dl, ok, start.Add(bound))
		}
	})
	t.Run("paused", func(t *testing.T) {
		start := time.Now()
		c, stop := startClock(context.Background(), bound)
		defer stop()
		resume := c.pause()
		ran := time.Since(start) // at least what ran before the pause
		<-time.After(2 * bound)  // work that takes longer than the bound (registering guest RAM)
		if err := c.Err(); err != nil {
			t.Fatalf("the clock ended while paused: %v", err)
		}
		resumed := time.Now()
		resume()
		waitDone(t, c)
		if d := time.Since(resumed); d < bound-ran || !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("ended %v after the resume with %v; want at least the bound less what ran before the pause, %v", d, c.Err(), bound-ran)
		}
	})
	t.Run("parent", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		c, stop := startClock(parent, time.Hour)
		defer stop()
		cancel()
		waitDone(t, c)
		if !errors.Is(c.Err(), context.Canceled) || c.expired() {
			t.Fatalf("Err = %v, expired %v; want the parent's, not expired", c.Err(), c.expired())
		}
		if c.pause()(); c.Err() == nil {
			t.Error("a pause after the end revived the clock")
		}
	})
	t.Run("stop", func(t *testing.T) {
		c, stop := startClock(context.Background(), time.Hour)
		stop()
		waitDone(t, c)
		if !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("Err = %v; want Canceled", c.Err())
		}
	})
}
