package session_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/session"
)

// TestSetupConcurrent: the providers start at the same time: of two
// whose Info waits for the other's (meetOthers), the second begins
// before the first ends (their logs say), and SetupMS covers their start.
func TestSetupConcurrent(t *testing.T) {
	p := newPair(t, provider("slow1", "ferry-hint-slow1"), provider("slow2", "ferry-hint-slow2"))
	t.Setenv("FERRY_TEST_MEET", filepath.Join(p.dir, "meet"))
	lk := startLeakCheck(t)
	got := p.receive(t)
	start := time.Now()
	rep, err := session.Send(context.Background(), p.src, nil, p.send)
	wall := time.Since(start)
	if r := <-got; err != nil || r.err != nil {
		t.Fatalf("send: %v; receive: %v", err, r.err)
	}
	checkHints(t, rep, map[string]string{"slow1": "ok", "slow2": "ok"})
	setup := time.Duration(rep.SetupMS) * time.Millisecond
	t.Logf("setup %v, total %d ms, wall %v", setup, rep.TotalMS, wall)
	if setup <= 0 || setup > wall {
		t.Errorf("setup_ms %d: want the providers' start, within the wall time %v", rep.SetupMS, wall)
	}
	// The order of the calls across the two processes is the meet
	// file's (their relayed logs may interleave in any order).
	b, err := os.ReadFile(filepath.Join(p.dir, "meet"))
	if order := strings.Fields(string(b)); err != nil || strings.Join(order, " ") != "begin begin end end" {
		t.Errorf("the providers' Info calls, in order: %q (%v); want both to begin before either ends", order, err)
	}
	lk.check(t)
}

// TestReportBeforeExit: Session.Send returns its report without waiting
// for a provider whose process takes slowExit to exit; Close waits for
// it, and then nothing is left.
func TestReportBeforeExit(t *testing.T) {
	p := newPair(t, provider("slowexit", "ferry-hint-slowexit"))
	lk := startLeakCheck(t)
	got := p.receive(t)
	s, err := session.Open(context.Background(), p.src.RAM(), p.send)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Send(context.Background(), p.src, nil)
	sent := time.Now()
	if r := <-got; err != nil || r.err != nil {
		t.Fatalf("send: %v; receive: %v", err, r.err)
	}
	checkHints(t, rep, map[string]string{"slowexit": "ok"})
	s.Close()
	closed := time.Since(sent)
	t.Logf("teardown_ms %d; Close returned %v after the report", rep.TeardownMS, closed)
	// The provider is told to stop within the teardown; its exit comes
	// slowExit later. Close must wait for it, and the report must not: a
	// loaded machine may stretch the teardown, which then leaves Close
	// less to wait, but the two together still cover the exit.
	teardown := time.Duration(rep.TeardownMS) * time.Millisecond
	if closed+teardown < slowExit/2 {
		t.Errorf("Close returned %v after the report, teardown %v: Close did not wait for the provider's exit (%v)",
			closed, teardown, slowExit)
	}
	if teardown >= slowExit {
		t.Errorf("teardown_ms %d: the provider's exit (%v) is in it", rep.TeardownMS, slowExit)
	}
	s.Close() // again: at once
	lk.check(t)
}
