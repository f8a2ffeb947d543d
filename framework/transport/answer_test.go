package transport_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// slowOpenPlugin's Open waits for its context to end and then says why
// it gave up, as a transport still connecting does: as a source, an
// error that wraps the context's (slowSendWhy); as a destination, one
// of no class at all (slowRecvWhy).
func slowOpenPlugin() transport.Transport {
	return &transport.Mock{
		OpenFunc: func(ctx context.Context, r transport.OpenRequest) error {
			<-ctx.Done()
			if r.Role == transport.RoleSend {
				return fmt.Errorf("%s: %w", slowSendWhy, ctx.Err())
			}
			return errors.New(slowRecvWhy)
		},
		CloseFunc: func() error { return nil },
	}
}

const (
	slowSendWhy = "slowopen: connect_timeout passed while connecting the endpoint"
	slowRecvWhy = "slowopen: names the last try dropped"
)

// TestOpenOutOfTimeSaysWhy: an Open that runs out of time tells the
// host the plugin's own reason, as it does in process, and is still a
// deadline error that returns once the caller's context ended. Before
// the plugin answered a margin early (plugproc's answer.go), gRPC ended
// the host's call at the deadline the plugin's context ended at, and
// the host got "context deadline exceeded" alone.
func TestOpenOutOfTimeSaysWhy(t *testing.T) {
	launched := launch(t, "ferry-transport-slowopen", nil)
	for _, c := range []struct {
		name string
		tr   transport.Transport
		role transport.Role
		want string
	}{
		{"in process, send", slowOpenPlugin(), transport.RoleSend, slowSendWhy + ": " + context.DeadlineExceeded.Error()},
		{"in process, receive", slowOpenPlugin(), transport.RoleReceive, slowRecvWhy},
		{"launched, send", launched, transport.RoleSend, slowSendWhy + ": " + context.DeadlineExceeded.Error()},
		{"launched, receive", launched, transport.RoleReceive, slowRecvWhy + ": " + context.DeadlineExceeded.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), outOfTimeBound)
			defer cancel()
			err := c.tr.Open(ctx, transport.OpenRequest{Role: c.role})
			if err == nil || err.Error() != c.want {
				t.Errorf("Open = %v; want %q", err, c.want)
			}
			// In process a plugin's error of no class stays one.
			if deadline := c.tr == launched || c.role == transport.RoleSend; errors.Is(err, context.DeadlineExceeded) != deadline {
				t.Errorf("Open = %v: errors.Is(context.DeadlineExceeded) is %v, want %v", err, !deadline, deadline)
			}
			if ctx.Err() == nil {
				t.Errorf("Open returned %v before its context ended", err)
			}
		})
	}
}

// outOfTimeBound is the Open's (Configure's) time in the out-of-time
// tests: the plugin answers a tenth of it (500 ms) before the host's
// deadline, room enough on a loaded two-core machine, where 2 s (200 ms
// of room) was thin.
const outOfTimeBound = 5 * time.Second
