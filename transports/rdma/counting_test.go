package rdma_test

import (
	"bytes"
	"context"
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
	for _, p := range providers(t) {
		for _, mode := range []string{"send-after-write", "delivery-complete"} {
			t.Run(p+"/"+mode, func(t *testing.T) {
				if mode == "delivery-complete" {
					fabric.ForceDeliveryComplete(true)
					defer fabric.ForceDeliveryComplete(false)
					if err := fabric.Providers("127.0.0.1", p)[p]; err != nil {
						t.Skipf("SKIPPED: provider %s has no FI_DELIVERY_COMPLETE: %v", p, err)
					}
				}
				s := open(t, p, 0, 64<<20, nil)
				if m := s.send.CompletionMode(); m != mode {
					t.Fatalf("the session commits by %s, want %s", m, mode)
				}
				countsBeforeCommit(t, s)
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
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	end := time.After(d)
	for {
		st := stats(ctx, t, tr)
		if st.BytesWire >= n {
			return st
		}
		select {
		case <-tick.C:
		case <-end:
			return st
		}
	}
}
