package rdma

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/guestram"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// TestProgressCounting: the destination's bookkeeping of PROGRESS
// frames, RUNS frames and COMMITs, without a fabric: pages are counted
// as reported and the rest at the COMMIT, each once, never beyond what
// the batch's RUNS named so far (a COMMIT before its RUNS counts as they
// come); a PROGRESS of a batch already committed is dropped; a count
// that goes back, runs past its COMMIT or its RUNS or names a later
// batch, a COMMIT of fewer pages than reported or of more than guest
// RAM has, and RUNS naming more than guest RAM has, are protocol errors.
func TestProgressCounting(t *testing.T) {
	const ramPages = 1024
	type event struct {
		kind   byte // 'p' PROGRESS, 'r' RUNS (one run of n pages), 'c' COMMIT
		seq, n uint64
	}
	p := func(seq, n uint64) event { return event{'p', seq, n} }
	r := func(seq, n uint64) event { return event{'r', seq, n} }
	c := func(seq, n uint64) event { return event{'c', seq, n} }
	for _, tc := range []struct {
		name   string
		next   uint64 // the batch expected
		events []event
		data   uint64 // pages counted after the events
		bad    bool   // the last event is refused
	}{
		{"as reported, rest at COMMIT", 1, []event{r(1, 40), p(1, 10), p(1, 25), c(1, 40)}, 40, false},
		{"late PROGRESS after COMMIT", 1, []event{r(1, 40), p(1, 10), c(1, 40), p(1, 30), p(1, 40)}, 40, false},
		{"COMMIT before its RUNS", 1, []event{c(1, 7)}, 0, false},
		{"RUNS after their COMMIT", 1, []event{r(1, 3), c(1, 7), r(1, 2), r(1, 2)}, 7, false},
		{"batch already committed", 3, []event{p(2, 99)}, 0, false},
		{"goes back", 1, []event{r(1, 10), p(1, 10), p(1, 9)}, 10, true},
		{"goes back after COMMIT", 1, []event{r(1, 10), p(1, 10), c(1, 10), p(1, 9)}, 10, true},
		{"past its COMMIT", 1, []event{r(1, 50), c(1, 40), p(1, 41)}, 40, true},
		{"past its RUNS", 1, []event{r(1, 10), p(1, 5), p(1, 11)}, 5, true},
		{"without RUNS", 1, []event{p(1, 1<<40)}, 0, true},
		{"COMMIT short of PROGRESS", 1, []event{r(1, 30), p(1, 30), c(1, 20)}, 30, true},
		{"COMMIT past guest RAM", 1, []event{r(1, 4), c(1, ramPages+1)}, 0, true},
		{"RUNS past guest RAM", 1, []event{r(1, ramPages), r(1, 1)}, 0, true},
		{"later batch", 1, []event{p(2, 1)}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st counters
			s := newSession(transport.RoleReceive, hclog.NewNullLogger(), config{}, &ram{RAM: guestram.RAM{Pages: ramPages}}, &st)
			s.rcv.next = tc.next
			commits := uint64(0) // accepted: each counts its own bytes
			for i, e := range tc.events {
				var err error
				switch e.kind {
				case 'p':
					err = s.receiveCtrl(decode(t, appendProgress(nil, e.seq, e.n)))
				case 'r':
					var run [runSize]byte
					binary.BigEndian.PutUint32(run[8:], uint32(e.n))
					err = s.receiveCtrl(decode(t, append(appendRunsHeader(nil, e.seq, runSize), run[:]...)))
				default:
					// A RUNS frame named that never comes: the batch is not acknowledged.
					err = s.committed(commit{seq: e.seq, pages: e.n, runs: 4})
				}
				if last := i == len(tc.events)-1; err != nil && (!last || !tc.bad || !errors.Is(err, transport.ErrProtocol)) {
					t.Fatalf("event %d %c%+v: %v", i, e.kind, e, err)
				} else if last && tc.bad && err == nil {
					t.Fatalf("event %d %c%+v accepted; want a protocol error", i, e.kind, e)
				}
				if err == nil && e.kind == 'c' {
					commits++
				}
			}
			wire := tc.data*pageSize + commits*commitSize
			if st.data.Load() != tc.data || st.wire.Load() != wire {
				t.Errorf("counted %d pages, %d bytes; want %d pages, %d bytes", st.data.Load(), st.wire.Load(), tc.data, wire)
			}
		})
	}
}

// decode decodes the one frame b holds.
func decode(t *testing.T, b []byte) wire.Frame {
	t.Helper()
	f, err := wire.NewDecoder(bytes.NewReader(b)).Next()
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return f
}

// TestProgressFrame: PROGRESS round trips, and other lengths or kinds
// are refused.
func TestProgressFrame(t *testing.T) {
	f, err := wire.NewDecoder(bytes.NewReader(appendProgress(nil, 7, 1<<40))).Next()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := parseProgress(f); err != nil || n != 1<<40 || f.Seq != 7 {
		t.Fatalf("round trip: seq %d, %d pages, %v", f.Seq, n, err)
	}
	for _, bad := range []wire.Frame{
		{Header: wire.Header{Type: wire.TypeMsg, Seq: 7}, Kind: progressKind, Payload: make([]byte, 7)},
		{Header: wire.Header{Type: wire.TypeMsg, Seq: 7}, Kind: progressKind, Payload: make([]byte, 9)},
		{Header: wire.Header{Type: wire.TypeMsg, Seq: 7}, Kind: runsKind, Payload: make([]byte, 8)},
	} {
		if _, err := parseProgress(bad); !errors.Is(err, transport.ErrProtocol) {
			t.Errorf("kind %d, %d bytes: %v; want ErrProtocol", bad.Kind, len(bad.Payload), err)
		}
	}
}

// TestWrittenBeforeInflight: a write's completion reaches the batch's
// written count before it leaves inflight. Flush takes inflight at 0 for
// "every write of the batch completed", waits for the ACK and moves
// written to the next batch: a count that came after the drop went to
// that next batch, whose PROGRESS then named pages it never wrote (a
// protocol error at its COMMIT if it wrote fewer). Here the poller's
// goroutine is held where it was (the COMMIT's completion takes snd.mu)
// just after both completions left inflight.
func TestWrittenBeforeInflight(t *testing.T) {
	var st counters
	s := newSession(transport.RoleSend, hclog.NewNullLogger(), config{}, &ram{}, &st)
	s.snd.written.init(1)
	s.snd.inflight.Store(2)
	s.snd.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.sendCompleted([]fabric.Completion{{Ctx: writeCtx(make([]byte, writeChunk))}, {Ctx: ctxCommit}})
	}()
	for s.snd.inflight.Load() != 0 { // Flush's wait for its writes
		runtime.Gosched()
	}
	_, pages := s.snd.written.get()
	s.snd.written.next(2) // Flush, once the ACK came
	s.snd.mu.Unlock()
	<-done
	if pages != writeChunk/pageSize {
		t.Errorf("batch 1 had %d pages written when its writes left inflight; want %d", pages, writeChunk/pageSize)
	}
	if seq, n := s.snd.written.get(); seq != 2 || n != 0 {
		t.Errorf("after batch 1's Flush the written count is batch %d, %d pages; want batch 2, 0 pages (its PROGRESS would name batch 1's)", seq, n)
	}
}
