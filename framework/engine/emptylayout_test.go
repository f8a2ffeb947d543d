package engine

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/transport"
)

// countingOpen is a pipe end that counts its Open calls.
type countingOpen struct {
	*pipeEnd
	opens atomic.Int32
}

// Open implements transport.Transport.
func (c *countingOpen) Open(ctx context.Context, req transport.OpenRequest) error {
	c.opens.Add(1)
	return c.pipeEnd.Open(ctx, req)
}

// TestEmptyLayoutRefused: a VM whose RAM has no region is refused by
// Send and by Receive at once (framework.Layout.Check), before the
// transport is opened, each side failed with an error that says why.
// Before, Check took it and the transport was opened (the pipe here
// refuses no file, "bad open", as tcp and rdma refuse no region); with
// one that opened on no file the migration ran on to the page check,
// where no HASHES goes out for zero pages: the source failed at its
// context's end waiting for VERIFIED, and the destination, LOADED sent,
// ended handover-unknown.
func TestEmptyLayoutRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, send := range []bool{true, false} {
		vm := &fakeVM{t: t, state: []byte("fake-state-v1"), dirty: bitmap.New(0)}
		s, r := newPipe(vm, vm)
		end := &countingOpen{pipeEnd: r}
		if send {
			end.pipeEnd = s
		}
		var rep Report
		var err error
		if send {
			rep, err = Send(ctx, vm, end, Options{VerifyPages: true})
		} else {
			rep, err = Receive(ctx, vm, end, Options{VerifyPages: true})
		}
		if err == nil || !strings.Contains(err.Error(), "no RAM regions") {
			t.Errorf("send %v: %v, want the empty layout refused", send, err)
		}
		if n := end.opens.Load(); n != 0 {
			t.Errorf("send %v: the transport was opened %d times for a VM without RAM", send, n)
		}
		if rep.Status != StatusFailed || rep.Handover != HandoverFailed {
			t.Errorf("send %v: status %s, handover %s; want failed", send, rep.Status, rep.Handover)
		}
		if vm.paused || vm.resumed != 0 {
			t.Errorf("send %v: the VM was paused or resumed", send)
		}
	}
}
