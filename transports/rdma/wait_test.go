package rdma

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestWaitNote: a wait on a notifier (waitNote: Flush's ACK, a MARK's
// room, an urgent COMMIT's ACK) returns nil once its condition holds,
// the session's error once the session ended without it, ctx's error
// when ctx ends; and a condition met before the session's end wins
// over the end, though no notify came (the ACK was stored and the
// session failed before the reader notified), so the answer does not
// depend on which wake-up the select takes. (Flush still fails such a
// batch: it looks at the session's error after the ACK.)
func TestWaitNote(t *testing.T) {
	ended := errors.New("the session ended")
	for _, tc := range []struct {
		name   string
		ackAt  bool // the ACK is stored just before the end
		cancel bool // ctx ends instead
		want   error
	}{
		{"ACK before the end", true, false, nil},
		{"end without ACK", false, false, ended},
		{"context", false, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(transport.RoleSend, hclog.NewNullLogger(), config{}, &ram{}, &counters{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			checked := make(chan struct{})
			first := true
			done := make(chan error, 1)
			go func() {
				done <- s.waitNote(ctx, &s.snd.ackNote, func() bool {
					if first {
						first = false
						close(checked)
						return false
					}
					return s.snd.acked.Load() >= 1
				})
			}()
			<-checked // the waiter found no ACK: it waits on the note, the end or ctx
			switch {
			case tc.cancel:
				cancel()
			case tc.ackAt:
				s.snd.acked.Store(1) // and no notify
				s.fail(ended, 0)
			default:
				s.fail(ended, 0)
			}
			if err := <-done; !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("waitNote: %v; want %v", err, tc.want)
			}
		})
	}
}
