package plugproc

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestLimitListener: a broker service's listener hands out at most
// maxBrokerConns connections at a time; one more is closed as soon as it
// is accepted, and a closed one frees its slot.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	ln := &limitListener{Listener: inner, slots: make(chan struct{}, maxBrokerConns)}
	defer ln.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("unix", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var kept []net.Conn
	for range maxBrokerConns {
		dial()
		kept = append(kept, <-accepted)
	}
	refused := func() {
		t.Helper()
		extra := dial()
		extra.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("a connection past %d: read %v, want EOF (closed by the host)", maxBrokerConns, err)
		}
	}
	refused()
	kept[0].Close()
	kept[0].Close() // twice: one slot back, not two
	dial()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a closed connection's slot was not given back")
	}
	refused()
}

// TestCallLimiter: the burst runs at once, then each call waits for its
// token at the rate, and a quiet moment refills the burst, no more.
func TestCallLimiter(t *testing.T) {
	l := newCallLimiter(1000, 3)
	now := l.last
	for i := range 3 {
		if d := l.reserve(now); d != 0 {
			t.Fatalf("call %d of the burst waits %v", i, d)
		}
	}
	for i, want := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		if d := l.reserve(now); d < want-time.Microsecond || d > want+time.Microsecond {
			t.Errorf("call %d past the burst waits %v, want %v", i, d, want)
		}
	}
	now = now.Add(time.Hour) // pays the debt and refills, up to the burst
	for i := range 3 {
		if d := l.reserve(now); d != 0 {
			t.Fatalf("call %d after a quiet hour waits %v", i, d)
		}
	}
	if d := l.reserve(now); d <= 0 {
		t.Errorf("a fourth call after a quiet hour does not wait: the burst grew beyond 3")
	}
}

// TestCallLimiterCancelled: a call whose context ends while it waits
// gives its token back, so calls that give up (short deadlines, a flood
// that cancels) leave no debt for the calls after them: what is owed
// stays bounded by the calls waiting now.
func TestCallLimiterCancelled(t *testing.T) {
	l := newCallLimiter(1000, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 + 1000 { // the burst, then a second's worth that gave up
		l.wait(ctx)
	}
	if d := l.reserve(time.Now()); d > 5*time.Millisecond {
		t.Errorf("a call after 1000 that gave up waits %v, want at most a few ms", d)
	}
}

// TestRefundCall: a unary handler that calls RefundCall gives its token
// back once, however often it calls; outside a handler it is a no-op.
// The rate is slow enough (a token a second) that what the bucket
// refills while the test runs does not show, and the second refund is
// checked below the burst, where the cap would not hide it.
func TestRefundCall(t *testing.T) {
	l := newCallLimiter(1, 3)
	refundTwice := func(ctx context.Context, _ any) (any, error) {
		RefundCall(ctx)
		RefundCall(ctx)
		return nil, nil
	}
	for range 5 {
		if _, err := l.unary(context.Background(), nil, nil, refundTwice); err != nil {
			t.Fatal(err)
		}
	}
	RefundCall(context.Background())
	if d := l.reserve(l.last); d != 0 {
		t.Errorf("after 5 refunded calls, a call waits %v: the burst of 3 was spent", d)
	}
	l.reserve(l.last) // 1 token left
	if _, err := l.unary(context.Background(), nil, nil, refundTwice); err != nil {
		t.Fatal(err)
	}
	if l.tokens < 0.5 || l.tokens > 1.5 {
		t.Errorf("%.2f tokens left after a call that took the last token and refunded twice, want 1: it gave back other than its one token", l.tokens)
	}
}
