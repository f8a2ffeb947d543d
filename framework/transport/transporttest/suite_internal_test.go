package transporttest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestOpenNamesReceiverFailure: when the receiver's Open fails at once
// (its port taken, a broken setup), the sender's tries stop instead of
// running until opTimeout, and the failure names the receiver's error,
// not only the sender's last "context deadline exceeded" (which is all
// a plugin's Open says when the host's deadline passes first).
func TestOpenNamesReceiverFailure(t *testing.T) {
	recv := &transport.Mock{OpenFunc: func(context.Context, transport.OpenRequest) error {
		return errors.New("listen on 127.0.0.1:4000: address already in use")
	}}
	send := &transport.Mock{OpenFunc: func(ctx context.Context, _ transport.OpenRequest) error {
		return errors.New("nobody answered")
	}}
	p := &pair{t: t, send: send, recv: recv}
	done := make(chan error, 1)
	go func() { done <- p.tryOpen() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("open = %v; want the receiver's error named", err)
		}
		t.Log(err)
	case <-time.After(opTimeout / 2):
		t.Fatalf("the sender kept trying for %v after the receiver's Open had failed", opTimeout/2)
	}
}
