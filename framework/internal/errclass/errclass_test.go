package errclass

import (
	"context"
	"errors"
	"fmt"
	"testing"

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
