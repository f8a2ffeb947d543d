package rdma

import (
	"context"
	"fmt"
	"time"
)

// logWarmed is what a setup logs when it waited for libfabric's first
// use in the process (fabric.Warm) before its clock started.
const logWarmed = "waited for libfabric to initialise (not counted in connect_timeout)"

// logWarmCut is what a setup logs when its Open ended while it waited
// for libfabric's first use: a host that runs the transport as a
// plugin gets only its own context's error back from an Open it
// cancelled (gRPC ends the call at the cancel), from one whose deadline
// the answer missed the margin for, or if it was built before that
// margin (framework/internal/plugproc's answer.go), so this line is
// where it can read what the Open waited for.
const logWarmCut = "the Open ended while waiting for libfabric to initialise in this process"

// awaitLibfabric waits, within ctx, for libfabric's first use in this
// process for the session's provider (fabric.Warm, started at Open;
// s.warmed), before a setup starts its clock: connect_timeout bounds
// the setup's network steps, not the process's one-time initialisation
// of libfabric, which took 0.1-0.4 s of wall time here inside the first
// fabric Listen or Connect and seconds under an emulated KVM, and which
// fabric calls cannot be interrupted during. A source waits before it
// dials, a destination before it takes connections on its control
// port (so the HELLO of a source that comes meanwhile waits unanswered
// in the listen queue).
//
// What it cannot do: keep the peer's bound from counting this side's
// wait. A source that dials a destination still initialising waits for
// it, like a destination not started yet, within its own
// connect_timeout; a destination that takes a HELLO waits for nothing
// (it is ready by then), nor does a source's next try in the same
// process. The wait itself has no bound but ctx's; one that ctx ends is
// logged (logWarmCut) as well as returned, since a plugin's host may get
// only its own context's error from the Open (logWarmCut says when).
func (s *session) awaitLibfabric(ctx context.Context) error {
	select {
	case <-s.warmed:
		return nil
	default:
	}
	start := time.Now()
	select {
	case <-s.warmed:
		s.log.Info(logWarmed, "provider", s.cfg.provider, "waited", time.Since(start).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
		waited := time.Since(start).Round(time.Millisecond)
		s.log.Warn(logWarmCut, "provider", s.cfg.provider, "waited", waited, "error", ctx.Err())
		return fmt.Errorf("%s (provider %s, waited %v; not counted in connect_timeout, only the Open's own context bounds it): %w",
			logWarmCut, s.cfg.provider, waited, ctx.Err())
	}
}
