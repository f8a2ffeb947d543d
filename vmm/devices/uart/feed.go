package uart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// feedPoll bounds how long Feed sleeps on a full FIFO without a wake-up
// (for example while the guest has the UART in loopback mode).
const feedPoll = 50 * time.Millisecond

// Feed copies r into the receive FIFO until r reports io.EOF (Feed returns
// nil), r fails (the error is returned wrapped), or ctx ends (ctx.Err()).
// When the FIFO is full it waits for the guest to read. It is meant to run
// in its own goroutine with r = the VMM's stdin; a Read that blocks on r is
// not interrupted by ctx, so Feed returns only after that Read does.
func (u *UART) Feed(ctx context.Context, r io.Reader) error {
	buf := make([]byte, FIFOSize)
	timer := time.NewTimer(feedPoll)
	defer timer.Stop()
	for {
		n, rerr := r.Read(buf)
		for pending := buf[:n]; len(pending) > 0; {
			pending = pending[u.Enqueue(pending):]
			if len(pending) == 0 {
				break
			}
			timer.Reset(feedPoll)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-u.space:
			case <-timer.C:
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			return nil
		case rerr != nil:
			return fmt.Errorf("uart input: %w", rerr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
