package e2e

import (
	"io"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm"
)

// faultProxy forwards TCP connections from its own port to target and can
// cut or corrupt the source → destination direction after some bytes.
type faultProxy struct {
	tcpProxy
	fault   atomic.Int32 // 0 none, 1 cut, 2 corrupt
	after   int64        // bytes forwarded before the fault
	forward atomic.Int64
}

const (
	faultNone = iota
	faultCut
	faultCorrupt
)

func newFaultProxy(t testing.TB, target string) *faultProxy {
	p := &faultProxy{}
	p.start(t, target, p.pipe)
	return p
}

// pipe copies src to dst; downstream is source → destination.
func (p *faultProxy) pipe(dst, src net.Conn, downstream bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && downstream {
			total := p.forward.Add(int64(n))
			if total > p.after {
				switch p.fault.Load() {
				case faultCut:
					p.cutAll()
					return
				case faultCorrupt:
					for i := 0; i < n && i < 64; i++ {
						buf[i] ^= 0x5a
					}
					p.fault.Store(faultNone) // once
				}
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

// tcpProxy is what the test proxies share: it listens, dials target
// for every connection it accepts and runs copy once each way (toDst:
// source → destination); cutAll closes every connection at once.
type tcpProxy struct {
	l      net.Listener
	target string
	closed atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

// start listens on a free loopback port; the test's cleanup closes it.
func (p *tcpProxy) start(t testing.TB, target string, copy func(dst, src net.Conn, toDst bool)) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.l, p.target = l, target
	p.wg.Go(func() { p.accept(copy) })
	t.Cleanup(p.close)
}

func (p *tcpProxy) addr() string { return p.l.Addr().String() }

func (p *tcpProxy) accept(copy func(dst, src net.Conn, toDst bool)) {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		d, err := dialTarget(p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, d)
		p.mu.Unlock()
		p.wg.Go(func() { copy(d, c, true) })
		p.wg.Go(func() { copy(c, d, false) })
	}
}

// dialTarget connects to the proxied address, retrying for a while when
// nothing listens there yet: the client's connect already succeeded (to
// the proxy), so a refusal here would reach it as a closed connection in
// the middle of its handshake, which a real transport does not retry,
// while without the proxy its connect would have been refused and
// retried. Tests start the destination a moment before the source; on a
// loaded machine that moment is not always enough.
func dialTarget(target string) (net.Conn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := net.Dial("tcp", target)
		if err == nil || time.Now().After(deadline) {
			return d, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *tcpProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) close() {
	if p.closed.Swap(true) {
		return
	}
	p.l.Close()
	p.cutAll()
	p.wg.Wait()
}

// TestMigrateNetworkFaults cuts the TCP connections, or corrupts bytes in
// flight, in the middle of a migration: the source keeps running and
// verifying, and the same job then succeeds.
func TestMigrateNetworkFaults(t *testing.T) {
	needKVM(t, "TestMigrateNetworkFaults (TCP cut and corrupt frame)")
	for _, tc := range []struct {
		name  string
		fault int32
	}{{"connection cut", faultCut}, {"corrupt bytes", faultCorrupt}} {
		t.Run(tc.name, func(t *testing.T) {
			listen := "127.0.0.1:" + itoa(freePort(t))
			proxy := newFaultProxy(t, listen)
			proxy.after = 32 << 20
			proxy.fault.Store(tc.fault)
			// The corrupted bytes must reach the frame checks, not TLS's.
			security := map[int32]string{faultCorrupt: "security { encryption = false }"}[tc.fault]
			p := startPairListen(t, "1G", "dirty:256@16", listen, "  connect = \""+proxy.addr()+"\"",
				`limits { bandwidth = "128MiB/s" }`+"\n"+security)
			rep, err := p.migrate(func(*exec.Cmd) {})
			if err == nil || rep.Status == "completed" {
				t.Fatalf("migration through a faulty network reported %s", rep.Status)
			}
			if st := p.src.state(t); st != vmm.StateRunning {
				t.Fatalf("source is %s after a failed migration, want running", st)
			}
			p.src.waitTicks(2, 30*time.Second)
			go p.dst.drain()
			p.dst.exitCode(30 * time.Second)
			proxy.fault.Store(faultNone)
			p.newDestination()
			if rep, err := p.migrate(nil); err != nil || rep.Status != "completed" {
				t.Fatalf("retry: %s, %v", rep.Status, err)
			}
			p.dst.waitTicks(2, 30*time.Second)
		})
	}
}
