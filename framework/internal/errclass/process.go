package errclass

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// exitWait is how long Fail waits for the exit signal of a process whose
// RPC failed: an RPC can fail a moment before go-plugin reaps the process.
const exitWait = 100 * time.Millisecond

// Process is the host's view of one plugin process for a kind's gRPC
// client: whether it is known to be gone, and how an RPC error maps to a
// class. Its methods are safe for concurrent use.
type Process struct {
	done  <-chan struct{}
	gone  atomic.Bool
	class error // the kind's ErrPluginGone
	table Table
}

// NewProcess watches a process that closes done when it exits (go-plugin
// cancels the context it hands to GRPCClient); gone is the kind's
// plugin-gone sentinel, table its classes.
func NewProcess(done <-chan struct{}, gone error, table Table) *Process {
	return &Process{done: done, class: gone, table: table}
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// SetGone marks the process gone before it has exited (it is being
// killed): every later call fails at once.
func (p *Process) SetGone() { p.gone.Store(true) }

// Alive returns an error of the plugin-gone class once the process is
// known to be gone, nil before.
func (p *Process) Alive() error {
	if !p.gone.Load() {
		select {
		case <-p.done:
			p.gone.Store(true)
		default:
			return nil
		}
	}
	return New(p.class, p.class.Error())
}

// Fail turns an RPC error into an error of its class. Deadline and
// cancellation of the caller's own context keep their context class,
// and once Fail returns ctx says it ended (ownEnd: a plugin's copy of
// the deadline can fire before ctx's own timer).
// Unavailable or Canceled from a process that has exited (or is known to
// be gone) is the plugin-gone class, and every later Alive fails without
// an RPC. Other codes map back through the table; Unavailable from a live
// process (an implementation's plugin-gone error, or a connection that
// broke before the exit was seen) is still the plugin-gone class if the
// table says so. nil stays nil.
func (p *Process) Fail(ctx context.Context, err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok || ownEnd(ctx, st) {
		return p.table.FromRPC(ctx, err)
	}
	if (st.Code() == codes.Unavailable || st.Code() == codes.Canceled) && (p.gone.Load() || p.exited()) {
		p.gone.Store(true)
		return New(p.class, p.class.Error()+": "+st.Message())
	}
	return p.table.FromStatus(st)
}

// exited waits briefly for the process-exit signal.
func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	case <-time.After(exitWait):
		return false
	}
}
