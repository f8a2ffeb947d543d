package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
)

// A transport in process (Config.TransportInProcess: transports/tcp
// linked in) has no process to kill behind its Close, as a plugin's
// has (framework/transport launched.Close: about 9 s at most). So the
// VMM bounds every wait for it, wherever the session closes it:
//
//	session.Open refused the transport's block ─┐
//	session teardown after Send or Receive ─────┼─► boundedClose.Close ─► the transport's Close
//	post-copy reconnect (transport.CloseHolding) ┘    at most inProcessCloseBound (v.closeBound),
//	                                                  then logged and left behind
//
// One that does not return is left behind with its goroutines and
// whatever it holds, its listening socket too (transports/tcp lets that
// go at the end of its Close), until it returns or the process exits,
// which a destination that failed does right after its report
// (migrationDone). Meanwhile the migration goes on, reports, and
// VM.Close does not wait for it. Before, only the teardown's wait was
// bounded (startMigration): a migrate-incoming whose transport block
// the transport refused waited in session.Open for that Close for ever,
// its migration owning the VM for good (TestInProcessCloseBoundedOnRefusedBlock).

// inProcessCloseBound bounds the wait for the Close of a transport in
// process: as long as a plugin's teardown can take before it is killed.
const inProcessCloseBound = 9 * time.Second

// inProcessTransport is the transport of a migration whose transport
// plugin is ferry-transport-tcp, run in process: transports/tcp (or
// v.inProcess's), its Close bounded.
func (v *VM) inProcessTransport() transport.Transport {
	log := session.HCLog(v.log, tcpPlugin)
	var tr transport.Transport
	if v.inProcess != nil {
		tr = v.inProcess(log)
	} else {
		tr = tcp.New(log)
	}
	bound := v.closeBound
	if bound <= 0 {
		bound = inProcessCloseBound
	}
	return boundedClose{Transport: tr, bound: bound, log: v.log}
}

// boundedClose is a transport in process whose Close and
// CloseHoldingListeners wait for the transport's at most bound. Its
// Answer is the transport's (transport.Answerer), or fails as not
// supported.
type boundedClose struct {
	transport.Transport
	bound time.Duration
	log   *slog.Logger
}

var (
	_ transport.ListenerHolder = boundedClose{}
	_ transport.Answerer       = boundedClose{}
)

// Close implements transport.Transport.
func (b boundedClose) Close() error { return b.wait(b.Transport.Close) }

// CloseHoldingListeners implements transport.ListenerHolder: the
// transport's (transport.CloseHolding), bounded as Close.
func (b boundedClose) CloseHoldingListeners() error {
	return b.wait(func() error { return transport.CloseHolding(b.Transport) })
}

// Answer implements transport.Answerer.
func (b boundedClose) Answer(ctx context.Context, kind uint32, owed *transport.Owed) error {
	a, ok := b.Transport.(transport.Answerer)
	if !ok {
		return fmt.Errorf("%w: the transport does not answer page requests itself", transport.ErrNotSupported)
	}
	return a.Answer(ctx, kind, owed)
}

// wait runs close on a goroutine and waits for it at most b.bound; one
// that takes longer is logged and left behind.
func (b boundedClose) wait(close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	t := time.NewTimer(b.bound)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	b.log.Error("the transport in process did not close within "+b.bound.String()+": the migration goes on without it; "+
		"what it holds (its goroutines, a listening port) stays until it returns or this VMM exits", "plugin", tcpPlugin)
	return fmt.Errorf("the transport in process did not close within %v", b.bound)
}
