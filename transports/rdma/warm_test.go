package rdma_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"strconv"
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
			// Through the plugin a host may see its own context's error
			// alone (a cancel, an answer slower than plugproc's margin,
			// a host built before it): then only the plugin's log says
			// what the Open waited for.
			if n, _ := log.count(rdma.LogWarmCut); n != 1 {
				t.Errorf("the %s logged %d lines saying %q, want 1: %s", role, n, rdma.LogWarmCut, log)
			}
		})
	}
}

// TestWarmUpSourceDuringDestinationWait: a source that connects while
// the destination still waits for libfabric's first use (its control
// port bound, nothing accepted yet) is held in the listen queue and
// served once the wait ends, the same try, nothing dropped; one whose
// connect_timeout ends first fails (it counts the destination's wait,
// as a destination not started yet), and its next try opens. Whether
// the source is in the queue is read from the kernel (/proc/net/tcp:
// an established connection to the control port), not guessed from
// time.
func TestWarmUpSourceDuringDestinationWait(t *testing.T) {
	prov := providers(t)[0]
	for _, c := range []struct {
		name        string
		sourceBound time.Duration // the source's connect_timeout
		firstFails  bool
	}{
		{"served", 10 * time.Second, false},
		{"source's bound first", time.Second, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, prov, nil)
			release := make(chan struct{})
			p.recv.SetWarmHook(func(string) <-chan struct{} { return release })
			_, portText, err := net.SplitHostPort(p.cfg["listen"].(string))
			if err != nil {
				t.Fatal(err)
			}
			port, _ := strconv.Atoi(portText)
			p.started = true
			go func() {
				defer close(p.recvDone)
				p.recvErr = p.recv.Open(p.ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: p.cfg, RAM: p.layout,
					Files: []*os.File{p.df}, Credentials: p.rc})
			}()
			src := maps.Clone(p.cfg)
			src["connect_timeout"] = int64(c.sourceBound)
			req := p.sendReq(transport.Tag{})
			req.Config = src
			sent := make(chan error, 1)
			go func() { sent <- p.send.Open(p.ctx, req) }()
			for queued(t, port) == 0 { // the source's connection, not yet accepted
				select {
				case err := <-sent:
					t.Fatalf("the source's Open returned %v before its connection was queued", err)
				case <-p.ctx.Done():
					t.Fatalf("no connection to port %d queued: %v", port, p.ctx.Err())
				case <-time.After(5 * time.Millisecond):
				}
			}
			if c.firstFails {
				err := <-sent
				if err == nil || !strings.Contains(err.Error(), "connect_timeout") {
					t.Fatalf("the source's first try: %v; want its connect_timeout to end it", err)
				}
				t.Logf("the source's first try: %v", err)
			}
			close(release)
			if c.firstFails {
				p.nextTryOpens(t, transport.Tag{})
			} else {
				if err := <-sent; err != nil {
					p.cancel()
					t.Fatalf("the source's Open: %v (the destination's: %v)", err, p.received())
				}
				if err := p.received(); err != nil {
					t.Fatalf("the destination's Open: %v", err)
				}
			}
			if n, _ := p.log.count(rdma.LogDropped); n != 0 {
				t.Errorf("the destination dropped %d tries: %s", n, p.log)
			}
			if n, _ := p.log.count(rdma.LogWarmed); n != 1 {
				t.Errorf("the destination logged %d lines saying %q, want 1: %s", n, rdma.LogWarmed, p.log)
			}
		})
	}
}

// queued is how many established TCP connections (IPv4 or IPv6) have
// local port port: on a listening port, those the kernel accepted,
// whether or not the listener took them yet.
func queued(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				n++
			}
		}
	}
	return n
}
