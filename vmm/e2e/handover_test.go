package e2e

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// msgProxy forwards TCP connections to target frame by frame (the
// framework/wire format after the TLS records of the authenticating
// handshake, so it needs encryption off) and loses one
// engine message: the first MSG of kind drop in the chosen direction is
// swallowed and every connection is cut at once, as if the network
// failed exactly then.
type msgProxy struct {
	tcpProxy
	toDst    bool   // drop source → destination (else destination → source)
	drop     uint32 // engine message kind
	dropped  atomic.Bool
	unparsed atomic.Bool // a stream that was not wire frames (encrypted?)
	stall    atomic.Bool // stop reading both ways, as a stopped peer would
	// onMsg, if set, sees each engine message's kind before it is
	// forwarded (toDst: source → destination); set it before the first
	// connection.
	onMsg func(toDst bool, kind uint32)
}

func newMsgProxy(t testing.TB, target string, toDst bool, kind uint32) *msgProxy {
	p := &msgProxy{toDst: toDst, drop: kind}
	p.start(t, target, p.frames)
	return p
}

// frames copies whole frames from src to dst; toDst is source → destination.
func (p *msgProxy) frames(dst, src net.Conn, toDst bool) {
	defer dst.Close()
	defer src.Close()
	hdr := make([]byte, wire.HeaderSize)
	for {
		for p.stall.Load() && !p.closed.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := io.ReadFull(src, hdr[:tlsHeader]); err != nil {
			return
		}
		if isTLSRecord(hdr) { // the authenticating handshake, before the frames
			if !copyTLSRecord(dst, src, hdr[:tlsHeader]) {
				return
			}
			continue
		}
		if _, err := io.ReadFull(src, hdr[tlsHeader:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[8:])
		if string(hdr[:4]) != wire.Magic || n > wire.MaxPayload {
			p.unparsed.Store(true)
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(src, payload); err != nil {
			return
		}
		if wire.Type(hdr[5]) == wire.TypeMsg && n >= 4 && p.onMsg != nil {
			p.onMsg(toDst, binary.BigEndian.Uint32(payload))
		}
		if wire.Type(hdr[5]) == wire.TypeMsg && n >= 4 && toDst == p.toDst &&
			binary.BigEndian.Uint32(payload) == p.drop && !p.dropped.Swap(true) {
			p.cutAll()
			return
		}
		if _, err := dst.Write(append(hdr, payload...)); err != nil {
			return
		}
		hdr = hdr[:wire.HeaderSize]
	}
}

// tlsHeader is the size of a TLS record header: content type, version, length.
const tlsHeader = 5

// isTLSRecord tells a TLS record (handshake, alert, change_cipher_spec or
// application data of TLS 1.2/1.3 framing) from a wire frame, which
// starts with wire.Magic.
func isTLSRecord(h []byte) bool {
	return h[0] >= 0x14 && h[0] <= 0x17 && h[1] == 0x03
}

// copyTLSRecord forwards one TLS record whose header is h.
func copyTLSRecord(dst, src net.Conn, h []byte) bool {
	body := make([]byte, binary.BigEndian.Uint16(h[3:]))
	if _, err := io.ReadFull(src, body); err != nil {
		return false
	}
	_, err := dst.Write(append(append([]byte(nil), h...), body...))
	return err == nil
}

// freshTicks forgets the lines printed so far, then waits for n new
// ticks, each verify=ok.
func (r *guestRun) freshTicks(n int, d time.Duration) {
	r.t.Helper()
	for {
		select {
		case _, ok := <-r.lines:
			if ok {
				continue
			}
		default:
		}
		break
	}
	r.waitTicks(n, d)
}

// resolveQuery asks a VMM where it stands; ok is false if it did not answer.
func resolveQuery(sock string) (api.ResolveResult, bool) {
	var res api.ResolveResult
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := control.Call(ctx, sock, "migrate-resolve", api.ResolveArgs{Action: api.ResolveQuery}, &res)
	return res, err == nil
}

// TestHandoverLostMessage loses COMMIT, or RUNNING, on the network: the
// handover is unknown on the source, migrate resolves it at once, and
// exactly one VMM runs the guest, which goes on verifying its memory.
func TestHandoverLostMessage(t *testing.T) {
	needProven(t, "TestHandoverLostMessage (a proxy drops COMMIT / RUNNING)")
	for _, tc := range []struct {
		name      string
		toDst     bool
		kind      uint32
		runsOnDst bool
	}{
		{"COMMIT lost", true, engine.MsgCommit, false},
		{"RUNNING lost", false, engine.MsgRunning, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen := "127.0.0.1:" + itoa(freePort(t))
			proxy := newMsgProxy(t, listen, tc.toDst, tc.kind)
			// The proxy reads frames: authenticated, but in the clear.
			p := startPairListen(t, "256M", "dirty:64@16", listen, "  connect = \""+proxy.addr()+"\"",
				`limits { switchover_timeout = "3s" }`+"\nsecurity { encryption = false }")
			rep, err := p.migrateOpts(false, nil)
			if proxy.unparsed.Load() {
				t.Fatal("the proxy saw a stream that is not plaintext wire frames")
			}
			if !proxy.dropped.Load() {
				t.Fatalf("the proxy never saw message %d (migrate: %s, %v)", tc.kind, rep.Status, err)
			}
			if rep.Status != string(engine.StatusHandoverUnknown) {
				t.Fatalf("status %q, want %s", rep.Status, engine.StatusHandoverUnknown)
			}
			if tc.runsOnDst {
				if err != nil {
					t.Fatalf("migrate failed although the destination runs the guest: %v", err)
				}
				p.dst.freshTicks(3, 30*time.Second)
				go p.src.drain()
				if code := p.src.exitCode(30 * time.Second); code != 0 {
					t.Errorf("source exited %d after it was told migrated", code)
				}
				if res, ok := resolveQuery(p.dst.control); !ok || res.Side != api.SideRunning {
					t.Errorf("destination %+v (answered %v)", res, ok)
				}
				return
			}
			if err == nil {
				t.Fatal("migrate reported success although the guest stayed on the source")
			}
			if st := p.src.state(t); st != vmm.StateRunning {
				t.Fatalf("source is %s after the resolution, want running", st)
			}
			p.src.freshTicks(3, 30*time.Second)
			go p.dst.drain()
			p.dst.exitCode(30 * time.Second) // discarded: it exits, its guest never ran
			if strings.Contains(p.dst.output(), "tick ") {
				t.Error("the discarded destination ran the guest")
			}
		})
	}
}

// TestDestinationSignalledAfterLoaded sends the destination VMM SIGTERM
// as its LOADED leaves (the proxy holds LOADED back a moment, so the
// signal lands before COMMIT can come): the destination cancels its
// migration, refuses COMMIT and tells the source, which runs the guest
// on; the destination exits without ever running it. Before, the
// engine took the cancel for a cut stream after LOADED and both sides
// were left handover-unknown.
func TestDestinationSignalledAfterLoaded(t *testing.T) {
	needProven(t, "TestDestinationSignalledAfterLoaded (SIGTERM to the destination between LOADED and COMMIT)")
	listen := "127.0.0.1:" + itoa(freePort(t))
	proxy := newMsgProxy(t, listen, false, 0) // drops nothing
	// A light writer and a long deadline: the switch-over also completes
	// under emulated KVM (vmm/e2e/tcg), where a page costs far more.
	p := startPairListen(t, "256M", "dirty:16@4", listen, "  connect = \""+proxy.addr()+"\"",
		`limits { switchover_timeout = "30s" }`+"\nsecurity { encryption = false }")
	var signalled atomic.Bool
	proxy.onMsg = func(toDst bool, kind uint32) {
		if !toDst && kind == engine.MsgLoaded && !signalled.Swap(true) {
			p.dst.cmd.Process.Signal(syscall.SIGTERM) // the VMM only, not its plugins' group
			time.Sleep(500 * time.Millisecond)
		}
	}
	rep, err := p.migrateOpts(false, nil)
	if proxy.unparsed.Load() {
		t.Fatal("the proxy saw a stream that is not plaintext wire frames")
	}
	if !signalled.Load() {
		t.Fatalf("the proxy never saw LOADED (migrate: %s, %v)", rep.Status, err)
	}
	if err == nil || rep.Status == string(engine.StatusCompleted) || rep.Status == string(engine.StatusHandoverUnknown) {
		t.Fatalf("migrate: %s (%v), want failed: the destination refused COMMIT", rep.Status, err)
	}
	if st := p.src.state(t); st != vmm.StateRunning {
		t.Fatalf("source is %s, want running", st)
	}
	p.src.freshTicks(3, 30*time.Second)
	go p.dst.drain()
	p.dst.exitCode(30 * time.Second)
	if strings.Contains(p.dst.output(), "tick ") {
		t.Error("the signalled destination ran the guest")
	}
}

// TestSwitchoverDeadlineDestinationStopped stops the destination (SIGSTOP)
// at the pause: the source must run again within switchover_timeout + 1 s.
func TestSwitchoverDeadlineDestinationStopped(t *testing.T) {
	needProven(t, "TestSwitchoverDeadlineDestinationStopped")
	const deadline = 2 * time.Second
	// One capped live pass while the guest rewrites 128 MiB: the final,
	// uncapped pass has enough to send that the stop lands inside it.
	p := startPair(t, "256M", "dirty:128@64", "", `limits {
  switchover_timeout = "2s"
  max_passes         = 1
  bandwidth          = "64MiB/s"
}`)
	var stoppedAt time.Time
	var resumedAfter time.Duration
	rep, err := p.migrateOpts(false, func(*exec.Cmd) {
		p.src.waitPhase(t, 60*time.Second, engine.PhaseStop, engine.PhaseState)
		// The whole process group: the VMM and its transport plugin.
		syscall.Kill(-p.dst.cmd.Process.Pid, syscall.SIGSTOP)
		stoppedAt = time.Now()
		for time.Since(stoppedAt) < 30*time.Second {
			if p.src.state(t) == vmm.StateRunning {
				resumedAfter = time.Since(stoppedAt)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	syscall.Kill(-p.dst.cmd.Process.Pid, syscall.SIGCONT)
	if err == nil || rep.Status == string(engine.StatusCompleted) {
		t.Fatalf("migration to a stopped destination reported %s", rep.Status)
	}
	t.Logf("source ran again %v after the destination was stopped at the pause", resumedAfter)
	if resumedAfter == 0 || resumedAfter > deadline+time.Second {
		t.Fatalf("source ran again after %v, want within %v", resumedAfter, deadline+time.Second)
	}
	p.src.freshTicks(2, 30*time.Second)
}

// TestMigrateWrongConnect gives the source an address nobody listens on:
// migrate must end within connect_timeout + 5 s, and the destination's
// port must be closed (its VMM gone) when it has.
func TestMigrateWrongConnect(t *testing.T) {
	needKVM(t, "TestMigrateWrongConnect")
	listen := "127.0.0.1:" + itoa(freePort(t))
	wrong := "127.0.0.1:" + itoa(freePort(t))
	p := startPairListen(t, "256M", "idle", listen, "  connect = \""+wrong+"\"\n  connect_timeout = \"2s\"", "")
	start := time.Now()
	rep, err := p.migrateOpts(false, nil)
	took := time.Since(start)
	if err == nil || rep.Status == string(engine.StatusCompleted) {
		t.Fatalf("migration to a wrong address reported %s", rep.Status)
	}
	if took > 7*time.Second {
		t.Errorf("migrate took %v with connect_timeout 2s", took)
	}
	if c, derr := net.DialTimeout("tcp", listen, time.Second); derr == nil {
		c.Close()
		t.Errorf("the destination still listens on %s after migrate ended", listen)
	}
	if st := p.src.state(t); st != vmm.StateRunning {
		t.Fatalf("source is %s, want running", st)
	}
}
