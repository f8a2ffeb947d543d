package vmm

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
	"github.com/ferryvm/ferry/vmm/api"
)

// closeBlocks is a transport in process whose Close does not return
// until release is closed: a transport with a bug, which no process
// kill can end (closeHangs), that the test lets go at its end.
type closeBlocks struct {
	transport.Transport
	release chan struct{}
}

func (c closeBlocks) Close() error { <-c.release; return nil }

// TestInProcessCloseBoundedOnRefusedBlock: a migrate-incoming whose
// transport runs in process and refuses its transport block (an unknown
// attribute), which session.Open then closes at once, fails within the
// bound on that transport's Close although the Close does not return,
// and gives the VM back: the migration is recorded failed, and quit
// stops the VM. Before, only the wait after Receive was bounded: Open
// waited for that Close for ever, the command never answered, and the
// migration it had claimed owned the VM for good (every pause, resume,
// quit and migration refused, the control server's shutdown waiting
// for the handler).
func TestInProcessCloseBoundedOnRefusedBlock(t *testing.T) {
	v := fakeWithRAM(t, StateIncoming)
	v.cfg.TransportInProcess = true
	release := make(chan struct{})
	v.inProcess = func(log hclog.Logger) transport.Transport { return closeBlocks{tcp.New(log), release} }
	v.closeBound = 300 * time.Millisecond
	call := serveCalls(t, v)
	t.Cleanup(func() { close(release) }) // before the control server's cleanup, which waits for its handlers

	start := time.Now()
	err := call("migrate-incoming", api.MigrateArgs{ID: "m1", Plugin: "/opt/ferry/ferry-transport-tcp",
		Transport: map[string]any{"listen": freeAddr(t), "no_such_attribute": 1}}, nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no_such_attribute") || took > 3*time.Second {
		t.Fatalf("migrate-incoming with a refused transport block: %v after %v; want refused, naming it, within the bound",
			err, took.Round(time.Millisecond))
	}
	t.Logf("refused after %v", took.Round(time.Millisecond))
	var st api.Migration
	if err := call("migrate-status", nil, &st); err != nil || !st.Done || st.Report == nil || st.Report.Status != engine.StatusFailed {
		t.Fatalf("migrate-status after the refused start: %+v, %v; want done, failed", st, err)
	}
	quitStops(t, v, "after the refused start", call("quit", nil, nil))
}
