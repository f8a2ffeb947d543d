package rdma_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// TestCountsBeforeCommit: the destination counts a batch's data pages
// while the source's writes complete (PROGRESS, progress.go), before the
// batch's COMMIT, with FI_ORDER_SAW and without it (FI_DELIVERY_COMPLETE:
// no MARKs, and runs shorter than 16 pages are named only every 64 KiB
// of RUNS or at the COMMIT, so without PROGRESS 4000 single pages moved
// while the destination's count stood still). The source does nothing
// between its SendPages calls until the destination counted the pages
// they queued, as one behind a slow link would send one call per stall
// window; after the Flush each page is in RAM and counted once.
func TestCountsBeforeCommit(t *testing.T) {
	eachCompletionMode(t, func(t *testing.T, p, mode string) {
		s := open(t, p, 0, 64<<20, nil)
		if m := s.send.CompletionMode(); m != mode {
			t.Fatalf("the session commits by %s, want %s", m, mode)
		}
		countsBeforeCommit(t, s)
	})
}

// forceDeliveryComplete opens this test's endpoints without FI_ORDER_SAW,
// as on a provider that lacks it, until the test ends: writes carry
// FI_DELIVERY_COMPLETE. It skips, loudly, where provider p has none.
func forceDeliveryComplete(t *testing.T, p string) {
	t.Helper()
	fabric.ForceDeliveryComplete(true)
	t.Cleanup(func() { fabric.ForceDeliveryComplete(false) })
	if err := fabric.Providers("127.0.0.1", p)[p]; err != nil {
		t.Skipf("SKIPPED: provider %s has no FI_DELIVERY_COMPLETE: %v", p, err)
	}
}

// eachCompletionMode runs fn as a subtest for every provider here, once
// committing by send-after-write and once with FI_DELIVERY_COMPLETE
// forced (skipped, loudly, where the provider has none).
func eachCompletionMode(t *testing.T, fn func(t *testing.T, provider, mode string)) {
	for _, p := range providers(t) {
		for _, mode := range []string{"send-after-write", "delivery-complete"} {
			t.Run(p+"/"+mode, func(t *testing.T) {
				if mode == "delivery-complete" {
					forceDeliveryComplete(t, p)
				}
				fn(t, p, mode)
			})
		}
	}
}

func countsBeforeCommit(t *testing.T, s *session) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fillRandom(s.src, 9)
	d := transport.KindData
	single := make([]transport.PageRun, 0, 4000)
	for q := uint64(4096); len(single) < cap(single); q += 2 {
		single = append(single, transport.PageRun{First: q, Count: 1, Kind: d})
	}
	calls := [][]transport.PageRun{{{First: 0, Count: 2048, Kind: d}}, single, {{First: 2048, Count: 1024, Kind: d}}}
	start := stats(ctx, t, s.recv)
	var sent uint64
	for i, runs := range calls {
		if err := s.send.SendPages(ctx, runs); err != nil {
			t.Fatalf("call %d: SendPages: %v", i, err)
		}
		for _, r := range runs {
			sent += r.Count
		}
		at := time.Now()
		st := waitBytes(ctx, t, s.recv, start.BytesWire+sent*4096, 10*time.Second)
		if got := st.BytesWire - start.BytesWire; got < sent*4096 {
			t.Fatalf("call %d: the destination counted %d bytes (%+v) in 10s after %d data pages and no Flush; want at least %d",
				i, got, st, sent, sent*4096)
		}
		t.Logf("call %d: %d pages counted %v after SendPages returned", i, sent, time.Since(at).Round(time.Millisecond))
	}
	if err := s.send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, runs := range calls {
		for _, r := range runs {
			if a, b := r.First*4096, (r.First+r.Count)*4096; !bytes.Equal(s.dst[a:b], s.src[a:b]) {
				t.Fatalf("pages %d+%d differ after Flush", r.First, r.Count)
			}
		}
	}
	if st := stats(ctx, t, s.recv); st.PagesData-start.PagesData != sent {
		t.Errorf("the destination counted %d data pages (%+v); want %d, each once", st.PagesData-start.PagesData, st, sent)
	}
}

func stats(ctx context.Context, t *testing.T, tr *rdma.Transport) transport.Stats {
	t.Helper()
	st, err := tr.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitBytes polls tr's Stats until its BytesWire reaches n or d passes,
// and returns the last Stats.
func waitBytes(ctx context.Context, t *testing.T, tr *rdma.Transport, n uint64, d time.Duration) transport.Stats {
	t.Helper()
	return waitStats(ctx, t, tr, func(st transport.Stats) bool { return st.BytesWire >= n }, d)
}

// waitStats polls tr's Stats until enough says so or d passes, and
// returns the last Stats.
func waitStats(ctx context.Context, t *testing.T, tr *rdma.Transport, enough func(transport.Stats) bool, d time.Duration) transport.Stats {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	end := time.After(d)
	for {
		st := stats(ctx, t, tr)
		if enough(st) {
			return st
		}
		select {
		case <-tick.C:
		case <-end:
			return st
		}
	}
}

// TestSourceCountsAtCompletion: the source counts a data page when its
// write completes, not when it is posted, so its Stats move while a
// Flush drains the writes in flight (up to 64 of 1 MiB) and stand still
// while none complete (transport.Transport's Stats: a sending transport
// counts as it writes, and a Flush that waits on a slow link is not a
// stall; the engine's stall watch on the source and flushReporting's
// rate read that count). The source's polls of its completions are held
// (SetPollPace) while SendPages posts 8 MiB in one run and 30 single
// pages; then Flush runs with the destination's ACK held (its control
// channel stops taking bytes at the ACK), so it cannot return while the
// completions are taken. Before, the source had counted every page when
// SendPages returned and the Flush moved its count by the COMMIT's 40
// bytes. With FI_ORDER_SAW and with forced FI_DELIVERY_COMPLETE.
func TestSourceCountsAtCompletion(t *testing.T) {
	eachCompletionMode(t, func(t *testing.T, p, mode string) {
		polls := make(chan struct{})
		openPolls := sync.OnceFunc(func() { close(polls) })
		send, recv := rdma.New(nil), rdma.New(nil)
		send.SetPollPace(func() { <-polls })
		acks := newValve(isAck)
		recv.SetControlWrap(acks.wrap)
		s := openWith(t, p, 0, 16<<20, send, recv)
		t.Cleanup(acks.open) // before the pair closes
		t.Cleanup(openPolls)
		if m := s.send.CompletionMode(); m != mode {
			t.Fatalf("the session commits by %s, want %s", m, mode)
		}
		sourceCounts(t, s, openPolls, acks)
	})
}

func sourceCounts(t *testing.T, s *session, openPolls func(), acks *valve) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fillRandom(s.src, 11)
	d := transport.KindData
	runs := []transport.PageRun{{First: 0, Count: 2048, Kind: d}}
	for q := uint64(2048); len(runs) < 31; q += 2 {
		runs = append(runs, transport.PageRun{First: q, Count: 1, Kind: d})
	}
	const pages = 2048 + 30
	if err := s.send.SendPages(ctx, runs); err != nil {
		t.Fatal(err)
	}
	st0 := stats(ctx, t, s.send)
	if st0.PagesData != 0 || st0.BytesWire >= 4096 {
		t.Errorf("with none of its writes' completions taken the source counted %+v after queueing %d pages; want no data page", st0, pages)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.send.Flush(ctx) }()
	openPolls()
	at := time.Now()
	st := waitBytes(ctx, t, s.send, st0.BytesWire+pages*4096, 10*time.Second)
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the destination's ACK was held", err)
	default:
	}
	if got := st.BytesWire - st0.BytesWire; got < pages*4096 || st.PagesData != pages {
		acks.open()
		<-flushed
		t.Fatalf("during the Flush the source's count grew by %d bytes (%+v) in 10 s; want at least %d and %d data pages",
			got, st, pages*4096, pages)
	}
	t.Logf("the source counted its %d pages %v into the Flush", pages, time.Since(at).Round(time.Millisecond))
	acks.open()
	if err := <-flushed; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for _, r := range runs {
		if a, b := r.First*4096, (r.First+r.Count)*4096; !bytes.Equal(s.dst[a:b], s.src[a:b]) {
			t.Fatalf("pages %d+%d differ after Flush", r.First, r.Count)
		}
	}
	if st := stats(ctx, t, s.send); st.PagesData != pages {
		t.Errorf("after the Flush the source counted %d data pages (%+v); want %d, each once", st.PagesData, st, pages)
	}
}

// TestSourceCountsUrgentAtCompletion: the source counts urgent data
// pages when their writes complete too, as bulk ones: with its polls
// held, SendPagesUrgent returns once the writes and the UCOMMIT are
// posted (FI_ORDER_SAW) and nothing is counted; once the polls go on,
// every page is, once. Before, they were counted as posted.
func TestSourceCountsUrgentAtCompletion(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			polls := make(chan struct{})
			openPolls := sync.OnceFunc(func() { close(polls) })
			send := rdma.New(nil)
			send.SetPollPace(func() { <-polls })
			s := open(t, p, 0, 4<<20, send)
			t.Cleanup(openPolls) // before the pair closes
			if m := s.send.UrgentCompletionMode(); m != "send-after-write" {
				t.Skipf("SKIPPED: urgent pages commit by %s here: SendPagesUrgent waits for the completions", m)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fillRandom(s.src, 12)
			runs := []transport.PageRun{{First: 0, Count: 300, Kind: transport.KindData}, {First: 400, Count: 1, Kind: transport.KindData}}
			if err := s.send.SendPagesUrgent(ctx, runs); err != nil {
				t.Fatal(err)
			}
			if st := stats(ctx, t, s.send); st.PagesData != 0 || st.BytesWire >= 4096 {
				t.Errorf("with none of its urgent writes' completions taken the source counted %+v; want no data page", st)
			}
			start := stats(ctx, t, s.send)
			openPolls()
			st := waitBytes(ctx, t, s.send, start.BytesWire+301*4096, 10*time.Second)
			if st.PagesData != 301 {
				t.Errorf("once its polls went on the source counted %+v; want 301 data pages", st)
			}
			landed := 0
			for landed < 301 {
				rs, err := s.recv.Landed(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					landed += int(r.Count)
				}
			}
			if !bytes.Equal(s.dst[:300*4096], s.src[:300*4096]) || !bytes.Equal(s.dst[400*4096:401*4096], s.src[400*4096:401*4096]) {
				t.Error("urgent pages differ after Landed reported them")
			}
		})
	}
}
