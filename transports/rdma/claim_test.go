package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// TestClaimNotStarved: a SendPages of a page that has an urgent copy
// not yet acknowledged waits for that copy, not for copies queued after
// it: those wait for the SendPages' batch and land after its copy. Each
// time the SendPages has waited for a copy, the test queues a fresh one
// of the same page (its ACK held, so it is not acknowledged yet), at
// most rounds times. Before, SendPages waited for each in turn and
// returned only once the test stopped (rounds+1 waits); now it waits
// once. The copy queued last wins, and Landed reports the page's writes
// in queue order: urgent, bulk, urgent.
func TestClaimNotStarved(t *testing.T) {
	const (
		q      = 10 // the page queued on both paths
		rounds = 10
	)
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			page := transport.PageRun{First: q, Count: 1, Kind: transport.KindData}
			bulk := transport.PageRun{First: 0, Count: 64, Kind: transport.KindData}
			var s *session
			release := func() {}
			defer func() { release() }()
			waited, queued := 0, 0
			var errs []error
			send := rdma.New(nil)
			hctx, hcancel := context.WithTimeout(context.Background(), time.Minute)
			defer hcancel()
			send.SetClaimWaitHook(func(done bool) { // the session takes it at Open
				if !done {
					release() // the copy SendPages waits for may be acknowledged
					return
				}
				waited++
				if queued == rounds {
					return
				}
				queued++
				release = s.recv.HoldUrgentAcks() // the next copy stays unacknowledged
				fillRandom(s.src[q*4096:(q+1)*4096], uint64(10+queued))
				if err := s.send.SendPagesUrgent(hctx, []transport.PageRun{page}); err != nil {
					errs = append(errs, err)
				}
			})
			s = open(t, p, 0, 4<<20, send)
			ctx := armLanded(t, s)
			fillRandom(s.src, 1)
			release = s.recv.HoldUrgentAcks()
			if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{page}); err != nil {
				t.Fatal(err)
			}
			if err := s.send.SendPages(ctx, []transport.PageRun{bulk}); err != nil {
				t.Fatalf("SendPages: %v", err)
			}
			if errs != nil {
				t.Fatalf("SendPagesUrgent in the hook: %v", errs)
			}
			if waited != 1 {
				t.Errorf("SendPages waited for %d urgent copies of page %d (%d queued while it ran); want 1, the copy queued before it",
					waited, q, queued)
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// Page q's writes: the first urgent copy, the bulk run, then each
			// copy queued after the bulk run.
			want := 2 + queued
			var writes []uint64 // the Count of each write of page q
			for len(writes) < want {
				runs, err := s.recv.Landed(ctx)
				if err != nil {
					t.Fatalf("Landed after %d of page %d's %d writes: %v", len(writes), q, want, err)
				}
				for _, r := range runs {
					if containsPage([]transport.PageRun{r}, q) {
						writes = append(writes, r.Count)
					}
				}
			}
			if writes[0] != 1 || writes[1] != bulk.Count {
				t.Errorf("page %d's writes reported as runs of %v pages; want the urgent copy (1), the bulk run (%d), then urgent copies",
					q, writes, bulk.Count)
			}
			if !bytes.Equal(s.dst[q*4096:(q+1)*4096], s.src[q*4096:(q+1)*4096]) {
				t.Errorf("page %d does not hold the copy queued last", q)
			}
		})
	}
}

// TestClaimWaitHonoursContext: a SendPages that waits for an urgent
// copy of its page, queued before and posted, whose ACK the destination
// holds, returns when its context ends (transport.Transport: every call
// that blocks honours its context), and the session goes on. Before, it
// waited for the ACK under no context: until the ACK came or the
// session ended.
func TestClaimWaitHonoursContext(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 0, 4<<20, nil)
			ctx := armLanded(t, s)
			fillRandom(s.src, 3)
			page := []transport.PageRun{{First: 3, Count: 1, Kind: transport.KindData}}
			release := s.recv.HoldUrgentAcks()
			defer release()
			if err := s.send.SendPagesUrgent(ctx, page); err != nil {
				t.Fatal(err)
			}
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer scancel()
			errc := make(chan error, 1)
			go func() { errc <- s.send.SendPages(sctx, page) }()
			select {
			case err := <-errc:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("SendPages behind an unacknowledged urgent copy: %v; want its context's deadline", err)
				}
			case <-time.After(10 * time.Second):
				release()
				t.Fatalf("SendPages under a 300 ms context still waits for the urgent ACK after 10 s (after the ACK: %v)", <-errc)
			}
			release()
			if err := s.send.SendPages(ctx, page); err != nil {
				t.Fatalf("SendPages after the ACK: %v", err)
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if !bytes.Equal(s.dst[3*4096:4*4096], s.src[3*4096:4*4096]) {
				t.Error("the page is not at the destination after the Flush")
			}
		})
	}
}
