package inbox

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

func TestOrderAndDeliveryAfterEnd(t *testing.T) {
	q := New()
	for k := uint32(1); k <= 3; k++ {
		if err := q.Push(transport.Message{Kind: k, Payload: []byte{byte(k)}}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	close(done)
	end := errors.New("ended")
	for k := uint32(1); k <= 3; k++ {
		m, err := q.Recv(context.Background(), done, func() error { return end })
		if err != nil || m.Kind != k {
			t.Fatalf("Recv = %v, %v; want kind %d", m.Kind, err, k)
		}
	}
	if _, err := q.Recv(context.Background(), done, func() error { return end }); err != end {
		t.Fatalf("Recv after the last message = %v, want the session's error", err)
	}
}

// TestHeld: Held counts what Push keeps for Recv, and nothing once a
// pusher took the queue.
func TestHeld(t *testing.T) {
	q := New()
	for k := uint32(1); k <= 2; k++ {
		if err := q.Push(transport.Message{Kind: k}); err != nil {
			t.Fatal(err)
		}
	}
	if n := q.Held(); n != 2 {
		t.Fatalf("Held = %d after 2 pushes", n)
	}
	if err := q.Attach(func(transport.Message) error { return nil }, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(transport.Message{Kind: 3}); err != nil || q.Held() != 0 {
		t.Fatalf("with a pusher: Push = %v, Held = %d; want nil, 0", err, q.Held())
	}
}

func TestLimits(t *testing.T) {
	q := New()
	for i := 0; i < MaxMsgs; i++ {
		if err := q.Push(transport.Message{Kind: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Push(transport.Message{Kind: 1}); !errors.Is(err, transport.ErrProtocol) {
		t.Fatalf("message %d: %v, want ErrProtocol", MaxMsgs+1, err)
	}
	q = New()
	if err := q.Push(transport.Message{Kind: 1, Payload: make([]byte, MaxBytes+1)}); !errors.Is(err, transport.ErrProtocol) {
		t.Fatalf("%d bytes: %v, want ErrProtocol", MaxBytes+1, err)
	}
}

func TestRecvContext(t *testing.T) {
	q := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Recv(ctx, make(chan struct{}), nil); err != context.Canceled {
		t.Fatalf("Recv = %v, want context.Canceled", err)
	}
}

// TestAttach: a pusher gets the messages held so far, then each as it
// arrives, with Push's error its own, and the end once after the last;
// Push drops what comes after the end.
func TestAttach(t *testing.T) {
	q := New()
	for k := uint32(1); k <= 2; k++ {
		if err := q.Push(transport.Message{Kind: k}); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint32
	var ends []error
	refuse := errors.New("refused")
	push := func(m transport.Message) error {
		if m.Kind == 9 {
			return refuse
		}
		got = append(got, m.Kind)
		return nil
	}
	if err := q.Attach(push, func(err error) { ends = append(ends, err) }); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(transport.Message{Kind: 3}); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(transport.Message{Kind: 9}); err != refuse {
		t.Fatalf("Push's error = %v, want the pusher's", err)
	}
	end := errors.New("ended")
	q.End(end)
	q.End(errors.New("again"))
	if err := q.Push(transport.Message{Kind: 4}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 3]" || len(ends) != 1 || ends[0] != end {
		t.Fatalf("pushed %v, ends %v; want [1 2 3] and one end", got, ends)
	}
}
