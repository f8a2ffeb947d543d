package transporttest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestOpenNamesReceiverFailure: when the receiver's Open fails at once
// (its port taken, a broken setup), the sender's tries stop instead of
// running until opTimeout, and the failure names the receiver's error,
// not only the sender's last "context deadline exceeded" (which is all
// a plugin's Open says when the host's deadline passes first).
func TestOpenNamesReceiverFailure(t *testing.T) {
	recv := &transport.Mock{OpenFunc: func(context.Context, transport.OpenRequest) error {
		return errors.New("listen on 127.0.0.1:4000: address already in use")
	}}
	send := &transport.Mock{OpenFunc: func(ctx context.Context, _ transport.OpenRequest) error {
		return errors.New("nobody answered")
	}}
	p := &pair{t: t, send: send, recv: recv}
	done := make(chan error, 1)
	go func() { done <- p.tryOpen() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("open = %v; want the receiver's error named", err)
		}
		t.Log(err)
	case <-time.After(opTimeout / 2):
		t.Fatalf("the sender kept trying for %v after the receiver's Open had failed", opTimeout/2)
	}
}

// TestLandedRunsChecked: a run Landed reports that breaks the contract
// (transport.PageRun.Check for the suite's RAM: empty, of no kind,
// beyond or straddling the end of RAM) ends the suite's collection of
// Landed with an error that names it, so that the tests which wait for
// landed pages fail with the reason: after COMMIT the engine halts a
// post-copy guest on such a run, or (empty, or of no kind over pages
// not arrived) drops it and waits for the pages to come again.
func TestLandedRunsChecked(t *testing.T) {
	ram := RAM{Layout: Layout}
	for name, bad := range map[string]transport.PageRun{
		"empty":      {First: 5, Count: 0, Kind: transport.KindData},
		"no-kind":    {First: 5, Count: 1},
		"beyond":     {First: ram.Pages(), Count: 1, Kind: transport.KindZero},
		"straddling": {First: ram.Pages() - 1, Count: 2, Kind: transport.KindData},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			recv := &transport.Mock{LandedFunc: func(context.Context) ([]transport.PageRun, error) {
				if calls++; calls == 1 {
					return []transport.PageRun{{First: 0, Count: 1, Kind: transport.KindData}, bad}, nil
				}
				return nil, transport.ErrClosed
			}}
			p := &pair{t: t, ram: ram, recv: recv}
			l := p.collectLanded()
			bounded(t, "the collection of Landed", 10*time.Second, func() { <-l.ended })
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.err == nil || !strings.Contains(l.err.Error(), "breaks its contract") {
				t.Fatalf("Landed's collection ended with %v; want the invalid run named", l.err)
			}
			l.err = nil // checked: collectLanded's cleanup would fail the test on it
		})
	}
}

// TestLandedEndOfRAM: a run that ends exactly at the end of guest RAM is
// guest RAM's (the check is not off by one).
func TestLandedEndOfRAM(t *testing.T) {
	ram := RAM{Layout: Layout}
	calls := 0
	recv := &transport.Mock{LandedFunc: func(context.Context) ([]transport.PageRun, error) {
		if calls++; calls == 1 {
			return []transport.PageRun{{First: ram.Pages() - 2, Count: 2, Kind: transport.KindZero}}, nil
		}
		return nil, transport.ErrClosed
	}}
	p := &pair{t: t, ram: ram, recv: recv}
	l := p.collectLanded()
	bounded(t, "the collection of Landed", 10*time.Second, func() { <-l.ended })
	if !errors.Is(l.err, transport.ErrClosed) || l.count(ram.Pages()-1, transport.KindZero) != 1 {
		t.Fatalf("Landed's collection ended with %v, runs %v", l.err, l.runs)
	}
}
