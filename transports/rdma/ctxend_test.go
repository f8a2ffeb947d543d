package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma"
)

// Calls whose context ends half-way, and what the session is after
// them: the transport contract lets the caller go on (framework/
// transport's Transport: every call that blocks honours its context;
// the gRPC server lets a call wait for an abandoned one), as tcp and
// loopback do.

// pages is run first+count of data.
func pages(first, count uint64) []transport.PageRun {
	return []transport.PageRun{{First: first, Count: count, Kind: transport.KindData}}
}

// TestMarkNotPostedLeavesNoTrace: a SendPages whose MARK waits for
// room in the bulk queue until its context ends (HoldBulkRoom, taken
// as the MARK is about to post) fails with that context's end, and the
// session goes on: the next calls each post their MARK, the one that
// takes the unposted MARK's buffer again too, and a Flush commits all.
// Before, the unposted MARK left its buffer marked busy and the count
// of MARKs posted one ahead: the call whose MARK needed that buffer
// (MaxMarks calls later) waited until its own context ended.
func TestMarkNotPostedLeavesNoTrace(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			send := rdma.New(nil)
			var armed atomic.Bool
			var release func()
			send.SetPostHook(func(mark bool) { // on the SendPages' goroutine
				if mark && armed.CompareAndSwap(true, false) {
					release = send.HoldBulkRoom()
				}
			})
			s := open(t, p, 0, 16<<20, send)
			if m := s.send.CompletionMode(); m != "send-after-write" {
				t.Skipf("batches are committed by %s: no MARKs", m)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fillRandom(s.src, 8)
			armed.Store(true)
			short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
			err := s.send.SendPages(short, pages(0, 64))
			stop()
			if release == nil {
				t.Fatal("the SendPages posted no MARK")
			}
			release()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("SendPages whose MARK found no room: %v; want its context's deadline", err)
			}
			calls := uint64(rdma.MaxMarks + 1) // the last MARK's buffer was the unposted one's before
			for i := uint64(1); i <= calls; i++ {
				c, stop := context.WithTimeout(ctx, 10*time.Second)
				err := s.send.SendPages(c, pages(i*64, 64))
				stop()
				if err != nil {
					t.Fatalf("SendPages %d of %d after the one whose MARK was not posted: %v", i, calls, err)
				}
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if n := (calls + 1) * 64 * 4096; !bytes.Equal(s.dst[:n], s.src[:n]) {
				t.Error("the destination's pages differ from the source's after the Flush")
			}
		})
	}
}
