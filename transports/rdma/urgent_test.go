package rdma_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/rdma"
)

// urgentRounds sends n urgent runs of 1 MiB of fresh random pages and
// reports how many were not completely in the destination's RAM when
// Landed reported them.
func urgentRounds(t *testing.T, s *session, n int) (bad int) {
	t.Helper()
	ctx := armLanded(t, s)
	pages := uint64(len(s.src) / 4096)
	const per = 256
	for i := range n {
		first := uint64(i*per) % (pages - per)
		fillRandom(s.src[first*4096:(first+per)*4096], uint64(100+i))
		run := transport.PageRun{First: first, Count: per, Kind: transport.KindData}
		if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{run}); err != nil {
			t.Fatalf("round %d: SendPagesUrgent: %v", i, err)
		}
		for got := uint64(0); got < per; {
			runs, err := s.recv.Landed(ctx)
			if err != nil {
				t.Fatalf("round %d: Landed: %v", i, err)
			}
			for _, r := range runs {
				if r.Kind != transport.KindData || r.First < first || r.First+r.Count > first+per {
					t.Fatalf("round %d: Landed reported %+v; want pages of %+v", i, r, run)
				}
				got += r.Count
			}
		}
		// Read the destination at once: every reported page must be there.
		if !bytes.Equal(s.dst[first*4096:(first+per)*4096], s.src[first*4096:(first+per)*4096]) {
			bad++
		}
	}
	return bad
}

// armLanded makes Landed record (it records from its first call on) and
// returns a context of a minute for the test.
func armLanded(t *testing.T, s *session) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	arm, stop := context.WithTimeout(ctx, time.Millisecond)
	s.recv.Landed(arm)
	stop()
	return ctx
}

// TestUrgentVisibleAtLanded: every urgent page is in the destination's
// RAM when Landed reports it (the urgent COMMIT comes after its writes);
// the same check catches a sender that commits before its writes.
func TestUrgentVisibleAtLanded(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 0, 64<<20, nil)
			if m := s.send.UrgentCompletionMode(); m != "send-after-write" {
				t.Errorf("urgent pages are committed by %s, want send-after-write (all software providers here have FI_ORDER_SAW)", m)
			}
			if bad := urgentRounds(t, s, 64); bad != 0 {
				t.Fatalf("%d of 64 urgent runs were not visible when Landed reported them", bad)
			}
			early := rdma.New(nil)
			early.SetUrgentCommitEarly()
			s = open(t, p, 0, 64<<20, early)
			bad := urgentRounds(t, s, 48)
			t.Logf("urgent commit before writes: %d of 48 runs caught incomplete at Landed", bad)
			if bad == 0 {
				t.Fatal("the check did not catch a sender that commits urgent pages before their writes")
			}
		})
	}
}

// TestUrgentDeliveryComplete: the same with endpoints opened without
// FI_ORDER_SAW: urgent writes carry FI_DELIVERY_COMPLETE and their
// COMMIT waits for their completions.
func TestUrgentDeliveryComplete(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			forceDeliveryComplete(t, p)
			s := open(t, p, 0, 64<<20, nil)
			if m := s.send.UrgentCompletionMode(); m != "delivery-complete" {
				t.Fatalf("urgent pages are committed by %s, want delivery-complete", m)
			}
			if bad := urgentRounds(t, s, 32); bad != 0 {
				t.Fatalf("%d of 32 urgent runs were not visible when Landed reported them", bad)
			}
		})
	}
}

// TestUrgentHeldBehindBatch: an urgent copy of a page that the bulk
// batch being built carries waits for that batch's ACK (SendPagesUrgent
// returns at once), lands after the bulk copy and wins; Landed reports
// the bulk write, then the urgent one.
func TestUrgentHeldBehindBatch(t *testing.T) {
	p := providers(t)[0]
	s := open(t, p, 0, 16<<20, nil)
	ctx := armLanded(t, s)
	const q = 100
	page := func(b []byte) []byte { return b[q*4096 : (q+1)*4096] }
	fillRandom(s.src, 1)
	if err := s.send.SendPages(ctx, []transport.PageRun{{First: 0, Count: 1024, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	fillRandom(page(s.src), 2)
	urgent := bytes.Clone(page(s.src))
	other := transport.PageRun{First: 2000, Count: 1, Kind: transport.KindData} // queued behind the held one
	if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}, other}); err != nil {
		t.Fatal(err)
	}
	// Held by the source until the batch's ACK: nothing of it can have
	// gone out (a source that sent it at once holds nothing).
	if n := s.send.UrgentHeld(); n != 1 || bytes.Equal(page(s.dst), urgent) {
		t.Errorf("%d urgent items held for the bulk batch; want 1, the copy of page %d in the unacknowledged batch", n, q)
	}
	if err := s.send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var landed []transport.PageRun
	for !containsPage(landed, other.First) {
		runs, err := s.recv.Landed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		landed = append(landed, runs...)
	}
	if !bytes.Equal(page(s.dst), urgent) {
		t.Error("the page does not hold the urgent copy queued last")
	}
	var order []int
	for i, r := range landed {
		if containsPage([]transport.PageRun{r}, q) {
			order = append(order, i)
		}
	}
	if len(order) != 2 || !containsPage(landed[order[1]:order[1]+1], q) || landed[order[0]].Count != 1024 {
		t.Errorf("Landed reported %v; want the bulk run with page %d, then the urgent copy", landed, q)
	}
	// A bulk copy queued after the urgent one lands after it.
	fillRandom(page(s.src), 3)
	later := bytes.Clone(page(s.src))
	if err := s.send.SendPages(ctx, []transport.PageRun{{First: q, Count: 1, Kind: transport.KindData}}); err != nil {
		t.Fatal(err)
	}
	if err := s.send.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(page(s.dst), later) {
		t.Error("a bulk copy queued after the urgent one did not win")
	}
	if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: 0, Count: 1, Kind: 9}}); err == nil || errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("SendPagesUrgent of an invalid run: %v; want a rejection", err)
	}
}

func containsPage(runs []transport.PageRun, q uint64) bool {
	for _, r := range runs {
		if q >= r.First && q-r.First < r.Count {
			return true
		}
	}
	return false
}

// TestLandedBulk: Landed reports every bulk write at its batch's COMMIT,
// data runs named by several RUNS frames, and zero runs; each page once.
func TestLandedBulk(t *testing.T) {
	p := providers(t)[0]
	s := open(t, p, 0, 128<<20, nil)
	ctx := armLanded(t, s)
	fillRandom(s.src, 5)
	pages := uint64(len(s.src) / 4096)
	var data []transport.PageRun
	for q := uint64(0); q < pages; q += 2 { // 16384 runs: more than one RUNS frame
		data = append(data, transport.PageRun{First: q, Count: 1, Kind: transport.KindData})
	}
	zero := []transport.PageRun{{First: 1, Count: 1, Kind: transport.KindZero}, {First: 5, Count: 1, Kind: transport.KindZero}}
	for _, batch := range [][]transport.PageRun{data, zero} {
		if err := s.send.SendPages(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if err := s.send.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]transport.Kind{}
	for uint64(len(seen)) < uint64(len(data)+len(zero)) {
		runs, err := s.recv.Landed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			for q := r.First; q < r.First+r.Count; q++ {
				if _, dup := seen[q]; dup {
					t.Fatalf("page %d reported twice", q)
				}
				seen[q] = r.Kind
			}
		}
	}
	for _, r := range append(data, zero...) {
		if seen[r.First] != r.Kind {
			t.Errorf("page %d reported as %v; want %v", r.First, seen[r.First], r.Kind)
		}
	}
	for q := uint64(0); q < pages; q += 2 {
		if !bytes.Equal(s.dst[q*4096:(q+1)*4096], s.src[q*4096:(q+1)*4096]) {
			t.Fatalf("page %d differs", q)
		}
	}
}

// TestUrgentWrongKeyOrDrop: an urgent write with a key the destination
// did not give fails the session on both sides and lands nothing; a
// destination that goes away makes the urgent sender fail, not hang.
func TestUrgentWrongKeyOrDrop(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p+"/key", func(t *testing.T) {
			s := open(t, p, 0, 16<<20, nil)
			fillRandom(s.src, 4)
			s.send.Corrupt(0x5a5a, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: 1, Count: 1, Kind: transport.KindData}})
			if err == nil {
				// The refused write ends the session (SendPagesUrgent
				// returned before): RecvUrgent returns its error then.
				_, err = s.send.RecvUrgent(ctx)
			}
			if err == nil || ctx.Err() != nil {
				t.Fatalf("urgent writes with a wrong key: %v; want a session error", err)
			}
			if err := s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: 2, Count: 1, Kind: transport.KindData}}); err == nil {
				t.Error("SendPagesUrgent after the session failed: no error")
			}
			t.Logf("sender: %v", err)
			_, rerr := s.recv.RecvUrgent(ctx)
			t.Logf("receiver: %v", rerr)
			if rerr == nil || ctx.Err() != nil {
				t.Errorf("the receiver's session goes on: %v", rerr)
			}
			if bytes.ContainsFunc(s.dst, func(r rune) bool { return r != 0 }) {
				t.Error("something landed in the destination's RAM")
			}
		})
		t.Run(p+"/drop", func(t *testing.T) {
			s := open(t, p, 0, 16<<20, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The destination closes once the first urgent run is queued.
			queued := make(chan struct{})
			closed := make(chan struct{})
			go func() { <-queued; s.recv.Close(); close(closed) }()
			defer func() { <-closed }()
			var err error
			for i := 0; err == nil && ctx.Err() == nil; i++ {
				err = s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: uint64(i % 4096), Count: 16, Kind: transport.KindData}})
				if i == 0 {
					close(queued)
				}
			}
			if !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("urgent sends after the destination closed: %v; want ErrClosed", err)
			}
			if _, err := s.send.RecvUrgent(ctx); !errors.Is(err, transport.ErrClosed) {
				t.Errorf("RecvUrgent on the sender: %v; want ErrClosed", err)
			}
		})
	}
}

// TestMarkWaitsForRoom: with maxMarks MARKs unanswered (the
// destination's MARKED answers held in its control channel), the next
// SendPages waits for an answer and then posts its MARK, so Landed
// reports its pages without a Flush. Before, it skipped the MARK and
// the pages waited for the Flush: the hang of TestLandedBeforeFlush
// under CPU load, where the source had not yet heard the answers (or
// taken the completion of the MARK that last used the buffer).
func TestMarkWaitsForRoom(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			send, recv := rdma.New(nil), rdma.New(nil)
			answers := newValve(isMarked)
			recv.SetControlWrap(answers.wrap)
			waited := false
			send.SetMarkWaitHook(func() { waited = true; answers.open() })
			s := openWith(t, p, 0, 16<<20, send, recv)
			t.Cleanup(answers.open) // before the pair closes
			ctx := armLanded(t, s)
			fillRandom(s.src, 7)
			seen := 0
			take := func(ctx context.Context, want int) {
				t.Helper()
				for seen < want {
					runs, err := s.recv.Landed(ctx)
					if err != nil {
						t.Fatalf("Landed (%d of %d pages reported, no Flush): %v", seen, want, err)
					}
					for _, r := range runs {
						seen += int(r.Count)
					}
				}
			}
			for i := range rdma.MaxMarks + 1 {
				if err := s.send.SendPages(ctx, []transport.PageRun{{First: uint64(i * 64), Count: 64, Kind: transport.KindData}}); err != nil {
					t.Fatal(err)
				}
				if i < rdma.MaxMarks {
					take(ctx, (i+1)*64)
				}
			}
			if !waited {
				t.Errorf("the MARK after %d unanswered did not wait for room", rdma.MaxMarks)
			}
			answers.open()
			short, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			take(short, (rdma.MaxMarks+1)*64)
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// isMarked reports whether b is a MARKED frame.
func isMarked(b []byte) bool {
	f, err := wire.NewDecoder(bytes.NewReader(b)).Next()
	return err == nil && f.Type == wire.TypeMsg && f.Seq != 0 && f.Kind == rdma.MarkedKind
}

// TestLandedBeforeFlush: bulk pages queued without a Flush reach Landed
// (a MARK after their writes), as a post-copy background push needs; a
// Flush later reports only what no MARK covered.
func TestLandedBeforeFlush(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			s := open(t, p, 0, 16<<20, nil)
			ctx := armLanded(t, s)
			fillRandom(s.src, 6)
			seen := map[uint64]int{}
			take := func(want int) {
				t.Helper()
				for len(seen) < want {
					runs, err := s.recv.Landed(ctx)
					if err != nil {
						t.Fatalf("Landed (%d of %d pages reported): %v", len(seen), want, err)
					}
					for _, r := range runs {
						for q := r.First; q < r.First+r.Count; q++ {
							seen[q]++
							if !bytes.Equal(s.dst[q*4096:(q+1)*4096], s.src[q*4096:(q+1)*4096]) {
								t.Fatalf("page %d reported before it was in RAM", q)
							}
						}
					}
				}
			}
			for i := range 40 { // more chunks than MARKs may be unanswered
				if err := s.send.SendPages(ctx, []transport.PageRun{{First: uint64(i * 64), Count: 64, Kind: transport.KindData}}); err != nil {
					t.Fatal(err)
				}
				take((i + 1) * 64)
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.send.SendPages(ctx, []transport.PageRun{{First: 4000, Count: 8, Kind: transport.KindData}}); err != nil {
				t.Fatal(err)
			}
			take(40*64 + 8)
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// A last page, written after the Flush: Landed reports in
			// completion order, so whatever the Flush reported again comes
			// before it.
			const last = 4090
			if err := s.send.SendPages(ctx, []transport.PageRun{{First: last, Count: 1, Kind: transport.KindData}}); err != nil {
				t.Fatal(err)
			}
			if err := s.send.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			take(40*64 + 8 + 1)
			for q, n := range seen {
				if n != 1 {
					t.Errorf("page %d reported %d times", q, n)
				}
			}
		})
	}
}

// TestAnswerNeverWaitsForAck: the urgent channel's reader answers page
// requests and also reads the destination's urgent ACKs, so answering
// must never wait for an ACK. With the ACKs held back, an answer for a
// page in an unacknowledged COMMIT and more answers than the destination
// has urgent receive slots must leave the reader reading (a message of
// another kind still reaches RecvUrgent), and once the ACKs flow every
// page lands with its last bytes. (Posting an answer from the reader
// itself, without the urgent sender's hand-off, was tried: it must then
// fall back to the sender in exactly these cases, and it measured no
// faster; docs/BENCHMARKS.md.)
func TestAnswerNeverWaitsForAck(t *testing.T) {
	p := providers(t)[0]
	s := open(t, p, 0, 16<<20, nil)
	ctx := armLanded(t, s)
	fillRandom(s.src, 7)
	owed, err := transport.NewOwed(uint64(len(s.src) / 4096))
	if err != nil {
		t.Fatal(err)
	}
	defer owed.Close()
	const kind = 11
	if err := s.send.Answer(ctx, kind, owed); err != nil {
		t.Fatal(err)
	}
	landed := map[uint64]int{}
	request := func(q uint64) {
		t.Helper()
		owed.Set(q, 1)
		req := transport.AppendPageRequest(nil, []transport.PageRun{{First: q, Count: 1}})
		if err := s.recv.SendUrgent(ctx, transport.Message{Kind: kind, Payload: req}); err != nil {
			t.Fatal(err)
		}
	}
	await := func(want map[uint64]int) {
		t.Helper()
		for {
			done := true
			for q, n := range want {
				done = done && landed[q] >= n
			}
			if done {
				return
			}
			runs, err := s.recv.Landed(ctx)
			if err != nil {
				t.Fatalf("Landed: %v (landed %v, want %v)", err, landed, want)
			}
			for _, r := range runs {
				for q := r.First; q < r.First+r.Count; q++ {
					landed[q]++
				}
			}
		}
	}

	request(1)
	await(map[uint64]int{1: 1})
	release := s.recv.HoldUrgentAcks()
	defer release()
	request(5)
	await(map[uint64]int{5: 1}) // landed, not acknowledged
	fillRandom(s.src[5*4096:6*4096], 8)
	request(5) // in an unacknowledged COMMIT
	want := map[uint64]int{5: 2}
	for i := range uint64(2 * rdma.Uslots) {
		request(100 + 2*i)
		want[100+2*i] = 1
	}
	if err := s.recv.SendUrgent(ctx, transport.Message{Kind: kind + 1, Payload: []byte("still reading?")}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m, err := s.send.RecvUrgent(rctx)
	cancel()
	if err != nil || m.Kind != kind+1 {
		t.Fatalf("RecvUrgent with the ACKs held: kind %d, %v; the reader is stuck", m.Kind, err)
	}
	release()
	await(want)
	for q := range want {
		if !bytes.Equal(s.dst[q*4096:(q+1)*4096], s.src[q*4096:(q+1)*4096]) {
			t.Errorf("page %d differs from the source's at the end", q)
		}
	}
}

// TestPushUrgentHandOverFails: when PushUrgent cannot hand over the
// urgent messages held so far (its sink refuses one), the session ends
// and the peer's ABORT names the side at fault, by the rule every read
// of the session follows: a refusal wrapping transport.ErrProtocol (the
// peer flooded) is the peer's "protocol violation", any other (the
// host's urgent channel broke here) "peer failed", not a claim that the
// peer sent something malformed.
func TestPushUrgentHandOverFails(t *testing.T) {
	prov := providers(t)[0]
	for _, c := range []struct {
		name    string
		refusal error
		code    wire.Code
	}{
		{"local fault", errors.New("the host's urgent channel broke"), wire.CodeFailed},
		{"the peer's fault", fmt.Errorf("%w: the peer sent too much", transport.ErrProtocol), wire.CodeProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, prov, 0, 1<<20, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.send.SendUrgent(ctx, transport.Message{Kind: 7, Payload: []byte("held")}); err != nil {
				t.Fatal(err)
			}
			for s.recv.UrgentWaiting() == 0 { // no event says it arrived: poll, bounded by ctx
				select {
				case <-ctx.Done():
					t.Fatal("the urgent message never reached the destination")
				case <-time.After(time.Millisecond):
				}
			}
			err := s.recv.PushUrgent(func(transport.Message) error { return c.refusal }, func(error) {})
			if !errors.Is(err, c.refusal) {
				t.Fatalf("PushUrgent = %v; want the sink's refusal", err)
			}
			_, err = s.send.RecvUrgent(ctx)
			if want := fmt.Sprintf("the peer aborted the session (%v: ", c.code); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("the source's session ended with %v; want %q", err, want)
			}
		})
	}
}

// TestPushedUrgentRefused: when the sink PushUrgent attached refuses an
// urgent message that arrives later, the session ends and the peer's
// ABORT names the side at fault by sessionbase.AbortCode's rule, as at
// the hand-over: a refusal wrapping transport.ErrClosed (the host's
// urgent channel closed here) is "peer failed" too, not an end without
// an ABORT, which the source took for the destination closing its
// channels.
func TestPushedUrgentRefused(t *testing.T) {
	prov := providers(t)[0]
	for _, c := range []struct {
		name    string
		refusal error
		code    wire.Code
	}{
		{"local fault", errors.New("the host's urgent channel broke"), wire.CodeFailed},
		{"local close", fmt.Errorf("the host's urgent channel: %w", transport.ErrClosed), wire.CodeFailed},
		{"the peer's fault", fmt.Errorf("%w: the peer sent too much", transport.ErrProtocol), wire.CodeProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, prov, 0, 1<<20, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.recv.PushUrgent(func(transport.Message) error { return c.refusal }, func(error) {}); err != nil {
				t.Fatalf("PushUrgent = %v", err)
			}
			if err := s.send.SendUrgent(ctx, transport.Message{Kind: 7, Payload: []byte("refused")}); err != nil {
				t.Fatal(err)
			}
			_, err := s.send.RecvUrgent(ctx)
			if want := fmt.Sprintf("the peer aborted the session (%v: ", c.code); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("the source's session ended with %v; want %q", err, want)
			}
		})
	}
}

// TestUrgentRepostFails: a destination that cannot post an urgent
// receive buffer again after taking its COMMIT (a fault of its own, not
// of what the source sent) ends the session with an ABORT of
// CodeFailed, "peer failed", not "protocol violation".
func TestUrgentRepostFails(t *testing.T) {
	s := open(t, providers(t)[0], 0, 1<<20, nil)
	ctx := armLanded(t, s)
	s.recv.FailUrgentRepost(errors.New("the provider refused the buffer"))
	fillRandom(s.src[4096:2*4096], 7)
	s.send.SendPagesUrgent(ctx, []transport.PageRun{{First: 1, Count: 1, Kind: transport.KindData}}) // its error, if any, is the session's below
	_, err := s.send.RecvUrgent(ctx)
	if want := fmt.Sprintf("the peer aborted the session (%v: ", wire.CodeFailed); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("the source's session ended with %v; want %q", err, want)
	}
}
