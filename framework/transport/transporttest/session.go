package transporttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

func testReopen(t *testing.T, p *pair) {
	for round := range 3 {
		p.open()
		runs := []transport.PageRun{{First: uint64(round) * 100, Count: 64, Kind: transport.KindData}}
		want := p.prepare(uint64(10+round), runs)
		p.sendAndFlush(runs)
		p.ram.expect(t, want)
		exchange(t, p, 2)
		p.closeBoth()
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}

// testPeerClose: when one side closes, the other's RecvMessage ends with
// ErrClosed (messages sent before still arrive first).
func testPeerClose(t *testing.T, p *pair) {
	for _, dir := range []struct {
		name          string
		closer, other transport.Transport
	}{{"sender closes", p.send, p.recv}, {"receiver closes", p.recv, p.send}} {
		p.open()
		if err := dir.closer.SendMessage(ctx(t), transport.Message{Kind: 9, Payload: []byte("last words")}); err != nil {
			t.Fatalf("%s: SendMessage: %v", dir.name, err)
		}
		if err := dir.closer.Close(); err != nil {
			t.Fatalf("%s: Close: %v", dir.name, err)
		}
		m, err := dir.other.RecvMessage(ctx(t))
		if err != nil || m.Kind != 9 {
			t.Errorf("%s: the message sent before Close: kind %d, %v", dir.name, m.Kind, err)
		}
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = dir.other.RecvMessage(c)
		cancel()
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("%s: RecvMessage on the other side = %v; want ErrClosed", dir.name, err)
		}
		p.closeBoth()
	}
}

func testDeadlines(t *testing.T, p *pair) {
	p.open()
	for _, tr := range []transport.Transport{p.send, p.recv} {
		c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var err error
		bounded(t, "RecvMessage with a 50ms deadline", 10*time.Second, func() { _, err = tr.RecvMessage(c) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("RecvMessage past its deadline = %v; want context.DeadlineExceeded", err)
		}
		c, cancel = context.WithCancel(context.Background())
		cancel()
		bounded(t, "RecvMessage with a cancelled context", 10*time.Second, func() { _, err = tr.RecvMessage(c) })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RecvMessage with a cancelled context = %v; want context.Canceled", err)
		}
	}
	// Nothing was lost or broken by the abandoned calls.
	exchange(t, p, 3)
	if err := p.send.Flush(ctx(t)); err != nil {
		t.Errorf("Flush with nothing queued: %v", err)
	}
}

// testOpenDeadline: a receiver nobody connects to gives up with its
// context, and opens normally after Close.
func testOpenDeadline(t *testing.T, p *pair) {
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	var err error
	bounded(t, "receiver Open with a 200ms deadline", 10*time.Second, func() {
		err = p.recv.Open(c, p.request(transport.RoleReceive))
	})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("receiver Open without a sender = %v; want context.DeadlineExceeded", err)
	}
	// Over gRPC the plugin's side of the abandoned Open may still be
	// waiting (cancellation travels after the caller's deadline); a sender
	// connecting now could be taken by it. Close ends it for sure.
	if err := p.recv.Close(); err != nil {
		t.Errorf("Close after a failed Open: %v", err)
	}
	p.open()
	exchange(t, p, 2)
}

// testConcurrent runs pages, messages both ways and Stats at once, as
// the contract allows.
func testConcurrent(t *testing.T, p *pair) {
	p.open()
	runs := workload(p.ram.Pages())
	want := p.prepare(20, runs)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 3)
	wg.Add(2)
	go func() { // the engine's main goroutine: pages and flushes
		defer wg.Done()
		for i := 0; i < len(runs); i += 10 {
			if err := p.send.SendPages(ctx(t), runs[i:min(i+10, len(runs))]); err != nil {
				errs <- fmt.Errorf("SendPages: %w", err)
				return
			}
			if err := p.send.Flush(ctx(t)); err != nil {
				errs <- fmt.Errorf("flush: %w", err)
				return
			}
		}
	}()
	go func() { // anyone: Stats
		defer wg.Done()
		for {
			for _, tr := range []transport.Transport{p.send, p.recv} {
				if _, err := tr.Stats(ctx(t)); err != nil {
					errs <- fmt.Errorf("stats: %w", err)
					return
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	exchange(t, p, 20)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.ram.expect(t, want)
}

// testPortHeld (transport API 7; found by an audit, 2026-12-06): a
// destination's post-copy that lost its connection closes its transport
// (CloseHoldingListeners; a plugin process is stopped) and opens it again
// on the same address for the source's RESUME. The port must stay bound
// throughout: while the session runs and between the two sessions no one
// else on the host can bind it (else a local user keeps the source out
// until reconnect_timeout, and after a cut in post-copy the guest is
// lost); the re-open works on it (a source that dials before it waits in
// the queue); Close lets it go. A receiver that is not a ListenerHolder,
// or whose configuration names no listen address, is skipped.
func testPortHeld(t *testing.T, p *pair) {
	h, ok := p.recv.(transport.ListenerHolder)
	if !ok {
		t.Skipf("the receiver (%T) is not a transport.ListenerHolder", p.recv)
	}
	addr, ok := p.recvCfg["listen"].(string)
	if !ok {
		t.Skip(`the receiver's configuration has no "listen" address`)
	}
	p.open()
	squat(t, addr, "while the session runs")
	if err := p.send.Close(); err != nil {
		t.Fatalf("close sender: %v", err)
	}
	if err := h.CloseHoldingListeners(); err != nil {
		t.Fatalf("close receiver, holding its listeners: %v", err)
	}
	squat(t, addr, "between two sessions")
	p.open()
	runs := []transport.PageRun{{First: 5, Count: 3, Kind: transport.KindData}}
	want := p.prepare(77, runs)
	p.sendAndFlush(runs)
	p.ram.expect(t, want)
	p.closeBoth()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after Close the port is still bound: %v", err)
	}
	ln.Close()
}

// squat fails t if anyone else can bind addr now.
func squat(t *testing.T, addr, when string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		t.Fatalf("%s: another listener could bind %s", when, addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("%s: bind %s: %v, want address in use", when, addr, err)
	}
}
