package hint_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// slowConfigureWhy is what slowConfigureProvider's Configure says.
const slowConfigureWhy = "slowconfigure: the guest never answered the balloon"

// slowConfigureProvider's Configure waits for its context to end and
// then says why it gave up, wrapping the context's error.
func slowConfigureProvider() hint.Provider {
	return &hint.Mock{
		ConfigureFunc: func(ctx context.Context, _ hint.Config, _ hint.VM, _ hint.Host) error {
			<-ctx.Done()
			return fmt.Errorf("%s: %w", slowConfigureWhy, ctx.Err())
		},
		CloseFunc: func(context.Context, bool) error { return nil },
	}
}

// TestConfigureOutOfTimeSaysWhy: a Configure that runs out of time
// tells the host the provider's own reason, as it does in process, and
// is still a deadline error that returns once the caller's context
// ended. Before the plugin answered a margin early (plugproc's
// answer.go), gRPC ended the host's call at the deadline the plugin's
// context ended at, and the host got "context deadline exceeded" alone.
func TestConfigureOutOfTimeSaysWhy(t *testing.T) {
	want := slowConfigureWhy + ": " + context.DeadlineExceeded.Error()
	for name, p := range map[string]hint.Provider{
		"in process": slowConfigureProvider(),
		"launched":   launch(t, "ferry-hint-slowconfigure", nil),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), outOfTimeBound)
			defer cancel()
			err := p.Configure(ctx, nil, hint.VM{}, nil)
			if !errors.Is(err, context.DeadlineExceeded) || err.Error() != want {
				t.Errorf("Configure = %v; want %q, a context.DeadlineExceeded", err, want)
			}
			if ctx.Err() == nil {
				t.Errorf("Configure returned %v before its context ended", err)
			}
		})
	}
}

// outOfTimeBound is the Open's (Configure's) time in the out-of-time
// tests: the plugin answers a tenth of it (500 ms) before the host's
// deadline, room enough on a loaded two-core machine, where 2 s (200 ms
// of room) was thin.
const outOfTimeBound = 5 * time.Second
