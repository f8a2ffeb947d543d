package rdma_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// slowWarm is a warm hook: libfabric's real first use (fabric.Warm),
// then took more, as under an emulated KVM, where the first fi_getinfo
// of a process takes seconds (README "libfabric's first use").
func slowWarm(took time.Duration) func(string) <-chan struct{} {
	return func(prov string) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			<-fabric.Warm(prov)
			<-time.After(took)
			close(done)
		}()
		return done
	}
}

// TestWarmUpNotCounted: libfabric's first use in a side's process that
// takes longer than that side's connect_timeout does not count against
// its bound (awaitLibfabric waits for it before the setup's clock
// starts): the pair opens at the first try. The hook makes the warm-up
// take 1.5 s more than it does against a connect_timeout of 1 s; the
// other side has 10 s. Before, the first fi_getinfo ran inside the
// source's fabric Connect and the destination's fabric Listen, under
// their clocks: a slow source failed its Open ("connect_timeout (1s)
// passed while connecting the fabric endpoint"), and a slow
// destination dropped the try as stalled.
func TestWarmUpNotCounted(t *testing.T) {
	prov := providers(t)[0]
	for _, slowSide := range []string{"source", "destination"} {
		t.Run(slowSide, func(t *testing.T) {
			fast := config(t, prov) // connect_timeout 10 s
			slow := maps.Clone(fast)
			slow["connect_timeout"] = int64(time.Second)
			dst, src := fast, slow
			if slowSide == "destination" {
				dst, src = slow, fast
			}
			p := newPair(t, prov, dst)
			tr := map[string]*rdma.Transport{"source": p.send, "destination": p.recv}[slowSide]
			tr.SetWarmHook(slowWarm(1500 * time.Millisecond))
			p.startDestination(t, transport.Tag{})
			req := p.sendReq(transport.Tag{})
			req.Config = src
			start := time.Now()
			if err := p.send.Open(p.ctx, req); err != nil {
				p.cancel()
				t.Fatalf("the source's Open: %v (the destination's: %v)", err, p.received())
			}
			if err := p.received(); err != nil {
				t.Fatalf("the destination's Open: %v", err)
			}
			t.Logf("opened in %v", time.Since(start))
			if n, _ := p.log.count(rdma.LogDropped); n != 0 {
				t.Errorf("the destination dropped %d tries: %s", n, p.log)
			}
			if slowSide == "destination" {
				if n, _ := p.log.count(rdma.LogWarmed); n != 1 {
					t.Errorf("the destination logged %d lines saying %q, want 1: %s", n, rdma.LogWarmed, p.log)
				}
			}
			if err := p.send.SendMessage(p.ctx, transport.Message{Kind: 7}); err != nil {
				t.Fatal(err)
			}
			if m, err := p.recv.RecvMessage(p.ctx); err != nil || m.Kind != 7 {
				t.Fatalf("message: kind %d, %v", m.Kind, err)
			}
		})
	}
}

// TestWarmUpBoundedByOpen: a warm-up that never ends holds neither
// side's Open beyond its own context: each fails with that context's
// error, saying what it waited for, and logs it (LogWarmCut: a host
// that runs the transport as a plugin receives only its context's
// error).
func TestWarmUpBoundedByOpen(t *testing.T) {
	prov := providers(t)[0]
	never := func(string) <-chan struct{} { return make(chan struct{}) }
	for _, role := range []transport.Role{transport.RoleSend, transport.RoleReceive} {
		t.Run(role.String(), func(t *testing.T) {
			p := newPair(t, prov, nil)
			tr, req, log := p.send, p.sendReq(transport.Tag{}), p.log
			if role == transport.RoleReceive {
				tr = p.recv
				req.Role, req.Files, req.Credentials = role, []*os.File{p.df}, p.rc
			} else {
				var l hclog.Logger
				log, l = newLogLines()
				tr = rdma.New(l)
				t.Cleanup(func() { tr.Close() })
			}
			tr.SetWarmHook(never)
			ctx, cancel := context.WithTimeout(p.ctx, 200*time.Millisecond)
			defer cancel()
			err := tr.Open(ctx, req)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "libfabric") {
				t.Fatalf("Open: %v; want context.DeadlineExceeded, saying it waited for libfabric", err)
			}
			// Through the plugin the host sees its own context's error
			// alone (gRPC ends the call at the same deadline): only the
			// plugin's log can say what the Open waited for.
			if n, _ := log.count(rdma.LogWarmCut); n != 1 {
				t.Errorf("the %s logged %d lines saying %q, want 1: %s", role, n, rdma.LogWarmCut, log)
			}
		})
	}
}
