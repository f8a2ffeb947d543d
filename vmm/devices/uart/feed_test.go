package uart

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// guestReader polls LSR and reads RBR like a polling driver until it has
// n bytes.
func guestReader(u *UART, n int) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		var got []byte
		b := []byte{0}
		for len(got) < n {
			u.Read(offLSR, b)
			if b[0]&lsrDR == 0 {
				time.Sleep(10 * time.Microsecond)
				continue
			}
			u.Read(offData, b)
			got = append(got, b[0])
		}
		ch <- got
	}()
	return ch
}

func TestFeed(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	input := strings.Repeat("the quick brown fox ", 50)
	got := guestReader(u, len(input))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := u.Feed(ctx, strings.NewReader(input)); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	if g := <-got; string(g) != input {
		t.Fatalf("guest read %q", g)
	}
}

func TestFeedCancelWhileFull(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- u.Feed(ctx, bytes.NewReader(make([]byte, 200))) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Feed = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Feed did not return after cancel")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestFeedReadError(t *testing.T) {
	u := New(nil)
	defer u.Close(context.Background())
	err := u.Feed(context.Background(), failingReader{})
	if !errors.Is(err, io.ErrClosedPipe) || !strings.HasPrefix(err.Error(), "uart input: ") {
		t.Fatalf("Feed = %v", err)
	}
}
