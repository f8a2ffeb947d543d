package uart

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{} // optional; receives once per Write call
	buf     bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	<-b.release
	return b.buf.Write(p)
}

func TestTHRNeverBlocksOnOut(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{})}
	u := New(bw)
	done := make(chan struct{})
	go func() {
		for _, c := range []byte("hello, world") {
			u.Write(offData, []byte{c})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("THR writes blocked on a stalled writer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := u.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stalled writer = %v, want deadline exceeded", err)
	}
	u.Write(offData, []byte{'!'}) // after Close: dropped
	close(bw.release)
	if err := u.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := bw.buf.String(); got != "hello, world" {
		t.Fatalf("out = %q", got)
	}
	if d := u.Dropped(); d != 1 {
		t.Fatalf("Dropped = %d, want 1", d)
	}
}

func TestTXQueueFullDrops(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{}, 4)}
	q := newTXQueue(bw)
	q.put(0)
	<-bw.entered // the writer holds byte 0 in a blocked Write
	for range txQueueLimit + 10 {
		q.put(1)
	}
	q.mu.Lock()
	queued, dropped := len(q.buf), q.dropped
	q.mu.Unlock()
	if queued != txQueueLimit || dropped != 10 {
		t.Fatalf("queued %d, dropped %d; want %d and 10", queued, dropped, txQueueLimit)
	}
	close(bw.release)
	u := &UART{tx: q}
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if bw.buf.Len() != txQueueLimit+1 || u.Dropped() != 10 {
		t.Fatalf("written %d, dropped %d; want %d and 10", bw.buf.Len(), u.Dropped(), txQueueLimit+1)
	}
}

type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	e.n++
	return 0, errors.New("broken pipe")
}

func TestOutErrors(t *testing.T) {
	ew := &errWriter{}
	u := New(ew)
	for range 3 {
		u.Write(offData, []byte{'x'})
	}
	err := u.Close(context.Background())
	if err == nil || err.Error() != "broken pipe" {
		t.Fatalf("Close = %v, want the writer's error", err)
	}
	if u.Dropped() != 3 {
		t.Fatalf("Dropped = %d, want 3", u.Dropped())
	}
}
