// Package ctxlock is a mutex that can also be waited for under a
// context: the reference VMM's run lock, state-save's file lock and the
// balloon device's lock, each of which a control command must be able
// to give up on at its deadline.
package ctxlock

import "context"

// Mutex is a mutex whose Lock can be bounded by a context. Its zero
// value is not usable: make one with New.
type Mutex chan struct{}

// New returns an unlocked Mutex.
func New() Mutex { return make(Mutex, 1) }

// Lock takes the lock, waiting as long as it takes.
func (m Mutex) Lock() { m <- struct{}{} }

// Unlock lets the lock go. Unlocking a Mutex not held blocks for ever.
func (m Mutex) Unlock() { <-m }

// TryLock takes the lock if it is free.
func (m Mutex) TryLock() bool {
	select {
	case m <- struct{}{}:
		return true
	default:
		return false
	}
}

// LockContext takes the lock, or returns ctx.Err() once ctx ended
// first. A free lock is taken even if ctx has ended already (one select
// over both would pick at random).
func (m Mutex) LockContext(ctx context.Context) error {
	if m.TryLock() {
		return nil
	}
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
