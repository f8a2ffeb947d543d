package ctxlock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLockContext: a free lock is taken even under an ended context; a
// held one is given up on when the context ends, and taken once let go.
func TestLockContext(t *testing.T) {
	m := New()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 { // one select over both ready cases would fail about half of these
		if err := m.LockContext(ended); err != nil {
			t.Fatalf("a free lock under an ended context: %v", err)
		}
		m.Unlock()
	}
	m.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.LockContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held lock: %v, want the deadline", err)
	}
	if m.TryLock() {
		t.Fatal("TryLock took a held lock")
	}
	got := make(chan error, 1)
	go func() { got <- m.LockContext(context.Background()) }()
	m.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("taken once let go: %v", err)
	}
}
