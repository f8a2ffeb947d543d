// Package boundtest checks, in tests, that a call bounded by a context
// returns at its deadline: the VMM's calls that wait for a lock a vCPU
// may hold (the balloon device's), or for a file system that may hang.
//
//	test ── Returns(d, call) ── call(ctx with deadline d) ──► its error
//	                  └── d + Grace passed: unblock, fail the test
//
// What it cannot do: stop a call that ignores its context; unblock must
// free it (release the lock it waits for), else the call's goroutine
// stays until the test binary ends.
package boundtest

import (
	"context"
	"testing"
	"time"
)

// Grace is how long past its deadline a call may take to return before
// Returns fails the test: generous, for a loaded machine.
const Grace = 5 * time.Second

// Returns calls call with a context whose deadline is d from now and
// returns its error. If call has not returned Grace after that deadline,
// Returns calls unblock (nil: none), waits for call, and fails the test
// (t.Fatalf), naming the call name.
func Returns(t testing.TB, name string, d time.Duration, unblock func(), call func(context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- call(ctx) }()
	select {
	case err := <-res:
		return err
	case <-time.After(d + Grace):
		if unblock != nil {
			unblock()
		}
		t.Fatalf("%s with a deadline of %v had not returned %v after it (%v once unblocked)", name, d, Grace, <-res)
		return nil
	}
}
