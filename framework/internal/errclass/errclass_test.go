package errclass

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	errA    = errors.New("a")
	errB    = errors.New("b")
	errGone = errors.New("gone")
	table   = NewTable(errA, errB, errGone)
)

// TestTableRoundTrip: every class survives ToStatus and FromStatus with
// its text and matches no other class; an error of no class keeps its
// text only.
func TestTableRoundTrip(t *testing.T) {
	for _, class := range []error{errA, errB, errGone, context.DeadlineExceeded, context.Canceled, nil} {
		in := fmt.Errorf("op: %w", class)
		if class == nil {
			in = errors.New("op: no class")
		}
		st, _ := status.FromError(table.ToStatus(in))
		out := table.FromStatus(st)
		if out.Error() != in.Error() || (class != nil && !errors.Is(out, class)) {
			t.Errorf("%v came back as %v (%s)", in, out, st.Code())
		}
		for _, c := range table {
			if c.Err != class && errors.Is(out, c.Err) {
				t.Errorf("%v also matches %v", in, c.Err)
			}
		}
	}
	if table.ToStatus(nil) != nil || table.FromRPC(context.Background(), nil) != nil {
		t.Error("nil did not stay nil")
	}
}

// TestFromRPC: the caller's own cancellation keeps its context class
// whatever the peer said; a non-status error passes through.
func TestFromRPC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := table.FromRPC(ctx, status.Error(codes.Canceled, "x")); !errors.Is(err, context.Canceled) || err.Error() != "x" {
		t.Errorf("cancelled call = %v", err)
	}
	plain := errors.New("plain")
	if err := table.FromRPC(ctx, plain); err != plain {
		t.Errorf("plain error = %v", err)
	}
}

// TestProcess: Unavailable from a live process maps through the table;
// once the process exited it is the gone class, and so is every later
// Alive, without an RPC; SetGone does the same before the exit.
func TestProcess(t *testing.T) {
	done := make(chan struct{})
	p := NewProcess(done, errGone, table)
	ctx := context.Background()
	if p.Alive() != nil {
		t.Fatal("a live process is gone")
	}
	if err := p.Fail(ctx, status.Error(codes.InvalidArgument, "bad")); !errors.Is(err, errB) {
		t.Errorf("InvalidArgument = %v", err)
	}
	close(done)
	if err := p.Fail(ctx, status.Error(codes.Unavailable, "eof")); !errors.Is(err, errGone) || err.Error() != "gone: eof" {
		t.Errorf("Unavailable after the exit = %v", err)
	}
	if err := p.Alive(); !errors.Is(err, errGone) {
		t.Errorf("Alive after the exit = %v", err)
	}
	q := NewProcess(make(chan struct{}), errGone, table)
	q.SetGone()
	if err := q.Alive(); !errors.Is(err, errGone) {
		t.Errorf("Alive after SetGone = %v", err)
	}
	if err := q.Fail(ctx, status.Error(codes.Canceled, "killed")); !errors.Is(err, errGone) {
		t.Errorf("Canceled after SetGone = %v", err)
	}
}

// lateCtx is a context whose deadline has passed but whose end its
// timer has not yet marked: it ends once something waits on Done, as a
// context's timer goroutine runs a moment after the deadline.
type lateCtx struct {
	context.Context
	once sync.Once
	done chan struct{}
}

func newLateCtx() *lateCtx { return &lateCtx{Context: context.Background(), done: make(chan struct{})} }

func (c *lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func (c *lateCtx) Done() <-chan struct{} {
	c.once.Do(func() { go close(c.done) })
	return c.done
}

func (c *lateCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// TestOwnDeadlineBeforeCtxEnded: a plugin's DeadlineExceeded for the
// caller's deadline, back before the caller's context marked its own
// end, is the caller's: when FromRPC and Fail return, ctx.Err() says
// so, as callers that tell their own deadline from a failure ask. A
// DeadlineExceeded before the caller's deadline is the plugin's: its
// class, and no wait. Until 2026-12-07 both returned at once with
// ctx.Err() nil: the engine's destination took a launched plugin's
// silent session for a broken migration stream and failed instead of
// waiting on for its source (framework/session
// TestRefusedPluginSessionCountsItsClose, about 1 run in 15 under load).
func TestOwnDeadlineBeforeCtxEnded(t *testing.T) {
	deadline := status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	ctx := newLateCtx()
	if err := table.FromRPC(ctx, deadline); !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Errorf("FromRPC = %v with ctx.Err() %v, want the caller's deadline, ended", err, ctx.Err())
	}
	ctx = newLateCtx()
	p := NewProcess(make(chan struct{}), errGone, table)
	if err := p.Fail(ctx, deadline); !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		t.Errorf("Fail = %v with ctx.Err() %v, want the caller's deadline, ended", err, ctx.Err())
	}
	early, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := p.Fail(early, deadline); !errors.Is(err, context.DeadlineExceeded) || early.Err() != nil {
		t.Errorf("the plugin's own deadline = %v with ctx.Err() %v", err, early.Err())
	}
}
