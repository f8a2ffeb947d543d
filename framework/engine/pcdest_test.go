package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// What the tests that play a post-copy source (a script) against a
// destination's Receive share: the set-up, the source's way to COMMIT,
// and the checks of a destination that must not run the VM.

// pcDest is a post-copy destination (pcSetup's) whose Receive runs on
// its own goroutine, and the script that is its source.
type pcDest struct {
	s            *script
	dst          *vmtest.VM
	ctx          context.Context        // the test's bound; the script runs under it
	never, stale []uint64               // pcPages(s)
	wait         func() (Report, error) // Receive's end
}

// pcDestCase says how pcReceive sets its destination up.
type pcDestCase struct {
	check     bool          // the source promises the page check (helloCheck)
	reconnect time.Duration // Options.ReconnectTimeout (0: the default)
	bound     time.Duration // the test's context (0: 30 s)
	// via makes the destination's transport of the pipe's end (nil: that
	// end itself).
	via func(rcv transport.Transport, dst *vmtest.VM) transport.Transport
	// cancelAtCommit: Receive runs under a context of its own (derived
	// from the bound) that its caller cancels as COMMIT is handed over
	// (cancelAtCommit, around via's transport).
	cancelAtCommit bool
}

// pcReceive starts Receive on a post-copy destination set up as c says.
// The bound's cancel and the script's Close run at the test's end. It
// cannot set the destination VM's own options (pcSetup's dopt) or the
// engine's other Options: tests that need them set up on their own.
func pcReceive(t *testing.T, c pcDestCase) *pcDest {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	if c.check {
		s.helloFlags |= helloCheck
	}
	if c.reconnect != 0 {
		opt.ReconnectTimeout = c.reconnect
	}
	if c.bound == 0 {
		c.bound = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.bound)
	t.Cleanup(cancel)
	rctx, tr := ctx, transport.Transport(rcv)
	if c.via != nil {
		tr = c.via(rcv, dst)
	}
	if c.cancelAtCommit {
		var rcancel context.CancelFunc
		rctx, rcancel = context.WithCancel(ctx)
		t.Cleanup(rcancel)
		tr = &cancelAtCommit{Transport: tr, cancel: rcancel}
	}
	d := &pcDest{s: s, dst: dst, ctx: ctx, wait: receiveAsync(rctx, dst, tr, opt)}
	t.Cleanup(func() { s.tr.Close() })
	d.never, d.stale = pcPages(s)
	return d
}

// ended waits for Receive's end and logs it.
func (d *pcDest) ended(t *testing.T) (Report, error) {
	t.Helper()
	rep, err := d.wait()
	t.Logf("destination: %s (%s): %v", rep.Status, rep.Handover, err)
	return rep, err
}

// precopyThenCommit plays pre-copy to LOADED (precopy, no page check),
// then answers the destination's REQUESTs on a goroutine of its own
// (serve) and sends COMMIT.
func (s *script) precopyThenCommit(ctx context.Context, never, stale []uint64) {
	s.precopy(ctx, never, stale, false)
	go s.serve(ctx)
	s.send(ctx, msgCommit, nil)
}

// wantTaggedAbort: abort, which answered the source's RESUME, carries
// the source's tag and a reason that contains why; want says in the
// error which ABORT that is.
func wantTaggedAbort(t *testing.T, abort []byte, tag migrationTag, why, want string) {
	t.Helper()
	if got, answers := resumeAbort(abort, tag); !answers || !strings.Contains(string(got), why) {
		t.Errorf("RESUME answered ABORT %q; want the tagged ABORT %s", abort, want)
	}
}

// wantSetupFailed: Receive failed, its fault service having failed
// before the switch (errPostcopySetup).
func wantSetupFailed(t *testing.T, rep Report, err error) {
	t.Helper()
	if !errors.Is(err, errPostcopySetup) || rep.Status != StatusFailed || rep.Handover != HandoverFailed {
		t.Errorf("Receive: %s (%s): %v; want failed, the fault service's failure before the switch", rep.Status, rep.Handover, err)
	}
}

// wantNeverResumed: the destination never resumed its VM, nor does it
// run.
func wantNeverResumed(t *testing.T, dst *vmtest.VM) {
	t.Helper()
	if n := dst.Counters().Resumes; n != 0 || dst.State() == vmtest.StateRunning {
		t.Errorf("destination resumed %d times, VM %v; want never resumed", n, dst.State())
	}
}
