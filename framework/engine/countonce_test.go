package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// closeTotals is a transport that records, at each Close, its Stats
// after that Close: the totals of the session that Close ended.
type closeTotals struct {
	transport.Transport
	mu     sync.Mutex
	totals []transport.Stats
}

func (c *closeTotals) Close() error {
	err := c.Transport.Close()
	st, _ := c.Transport.Stats(context.Background())
	c.mu.Lock()
	c.totals = append(c.totals, st)
	c.mu.Unlock()
	return err
}

func (c *closeTotals) first() transport.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.totals) == 0 {
		return transport.Stats{}
	}
	return c.totals[0]
}

// TestPostcopyRecvCountsOnce: a destination whose post-copy broke and
// whose source never came back reports the bytes of its one session
// once. Before, its report counted that session again at every look at
// the closed transport's Stats (which report the closed session's
// totals until the next Open: transport.Transport.Stats): at each
// failed reopen and at the end, several times the bytes that moved.
func TestPostcopyRecvCountsOnce(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	opt.ReconnectTimeout = 300 * time.Millisecond
	tr := &closeTotals{Transport: rcv}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, tr, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.tr.Close()
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if !errors.Is(err, ErrPostcopyBroken) {
		t.Fatalf("Receive: %v; want post-copy broken", err)
	}
	first := tr.first()
	t.Logf("the session's totals at its close: %d bytes, %d pages; report: %d bytes, %d pages (closes: %d)",
		first.BytesWire, first.PagesData, rep.BytesWire, rep.PagesSent, len(tr.totals))
	if first.BytesWire == 0 {
		t.Fatal("the session moved no bytes")
	}
	// Later sessions (reopens that found no source) moved nothing.
	if rep.BytesWire != first.BytesWire || rep.PagesSent != first.PagesData {
		t.Errorf("report: %d bytes, %d data pages; the one session moved %d bytes, %d data pages",
			rep.BytesWire, rep.PagesSent, first.BytesWire, first.PagesData)
	}
}
