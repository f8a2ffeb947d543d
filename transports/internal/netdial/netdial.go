package netdial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// Retry dials TCP addr until it connects or ctx ends, waiting 20 ms
// after the first refusal and doubling up to 500 ms. timeout is ctx's
// bound, named in the error when that deadline passes; that error wraps
// transport.ErrClosed. The caller tunes and owns the connection.
func Retry(ctx context.Context, addr string, timeout time.Duration) (*net.TCPConn, error) {
	var d net.Dialer
	wait := 20 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("nothing accepted a connection at %s within %v (is the destination listening there?): %w: %w",
					addr, timeout, err, transport.ErrClosed)
			}
			return nil, fmt.Errorf("connect to %s: %w", addr, ctx.Err())
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}
