package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
)

// slowStats is a transport whose Stats answers, but only after delay.
type slowStats struct {
	transport.Transport
	delay time.Duration
}

func (s slowStats) Stats(ctx context.Context) (transport.Stats, error) {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return transport.Stats{}, ctx.Err()
	}
	return s.Transport.Stats(ctx)
}

// TestSlowStatsNotStopped: a destination whose own transport's Stats
// answers, but only after 1.5 s (more than statsTimeout), and whose
// source stops after a few pages, fails on the stall blaming the
// source and tells it why (ABORT). Before, each of its stall watch's
// Stats calls was cut at statsTimeout, so a plugin that is only slow
// was taken for stopped (selfStopped): the destination blamed itself
// and sent no ABORT, and its source learnt of the end only when the
// connection closed.
func TestSlowStatsNotStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, dst := memGuest(t, 0x5a), memGuest(t, 0)
	sc, dc, err := transport.MintCredentials(false)
	must(t, err)
	sendTr, recvTr := loopback.NewPipe()
	const limit = 3 * time.Second // twice the plugin's delay: it answers within it
	wait := receiveAsync(ctx, dst, slowStats{recvTr, 1500 * time.Millisecond},
		Options{MigrationID: "job-a", Credentials: dc, StallTimeout: limit, SwitchoverTimeout: limit, Log: testLogger(t)})
	peer := newScript(t, src, sendTr, sc)
	peer.tag = tagFor("job-a")
	peer.req.Tag = transport.Tag(peer.tag)
	must(t, sendTr.Open(ctx, peer.req))
	defer sendTr.Close()
	peer.send(ctx, msgHello, encodeHello(peer.layout, peer.helloFlags, peer.tag))
	peer.recv(ctx, msgReady)
	must(t, sendTr.SendPages(ctx, []transport.PageRun{{First: 0, Count: 4, Kind: transport.KindData}}))
	must(t, sendTr.Flush(ctx))
	got := noAnswer(ctx, peer, 20*time.Second)
	_, err = wait()
	t.Logf("destination: %v; the source was told %q", err, got)
	if !errors.Is(err, errStalled) || selfStopped(err) || strings.Contains(err.Error(), "this side's transport plugin stopped") {
		t.Errorf("Receive: %v; want a stall blamed on the source, not on this side's slow plugin", err)
	}
	if !strings.HasPrefix(got, "ABORT") || !strings.Contains(got, "stalled") {
		t.Errorf("the source was told %q; want an ABORT naming the stall", got)
	}
}
