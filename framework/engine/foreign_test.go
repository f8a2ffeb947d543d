package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/vmtest"
)

// Another migration's source at this destination's address. Two
// migrations between the same two hosts with an operator's certificates
// (a security block) share their credentials, so each one's source
// authenticates at the other's destination; a source in post-copy keeps
// dialling its destination's address for reconnect_timeout, and a later
// migration to that host may listen there (the port of a destination
// that died, taken again). Its RESUME names a guest of the same size:
// only the migration it belongs to tells it apart.

// foreignResume is the RESUME of another migration's source, in post-copy
// with a guest of the same size: only its tag differs.
func foreignResume(pages uint64) []byte { return testResume(pages, newMigrationTag()) }

// noAnswer reports what the destination answered on the script's
// connection within d, or "" if it answered nothing.
func noAnswer(ctx context.Context, s *script, d time.Duration) string {
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	m, err := s.tr.RecvMessage(rctx)
	if err != nil {
		return ""
	}
	return msgName(m.Kind) + " " + string(m.Payload)
}

// strangerResumes connects as another migration's source, says RESUME,
// fails t if the destination answers within a second, and hangs up.
func strangerResumes(ctx context.Context, t *testing.T, s *script) {
	must(t, s.tr.Open(ctx, s.req))
	s.send(ctx, msgResume, foreignResume(s.pages))
	if got := noAnswer(ctx, s, time.Second); got != "" {
		t.Errorf("the destination answered another migration's RESUME: %.80q", got)
	}
	s.tr.Close()
}

// After RUNNING the connection breaks. Another migration's source dials
// first and says RESUME: answered MISSING, it would push its own guest's
// pages into this running guest (and its own destination would never
// get them). The destination must answer it nothing, then take its own
// source's RESUME and complete page-exact.
func TestForeignResumeAfterRunning(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{WriteEvery: time.Millisecond, WriteBatch: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var savedSeq uint64
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		savedSeq = s.src.Seq()
		sctx, stop := context.WithCancel(ctx)
		go s.serve(sctx)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		s.sendMu.Lock()
		s.tr.Close()
		stop()
		s.sendMu.Unlock()
		time.Sleep(50 * time.Millisecond)

		strangerResumes(ctx, t, s)

		// Its own source: all that was absent is still missing.
		if diff := bitmapDiff(s.resume(ctx), s.absent); diff != "" {
			t.Errorf("MISSING after the stranger's try: %s", diff)
		}
		go s.serve(ctx)
		s.push(ctx)
		s.settled(ctx)
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err != nil || rep.Reconnects != 1 || rep.Handover != HandoverRunning {
		t.Fatalf("Receive: %v, report %+v", err, rep)
	}
	checkPages(t, s, dst, savedSeq, ^uint64(0))
}

// The connection breaks after LOADED, before COMMIT: the destination
// listens to tell its own source "never got COMMIT, resume the VM"
// (ABORT). Told to another migration's source, in post-copy with a
// destination that ran its guest and died, that source would resume its
// stale copy: the guest would run again from an older state. The
// destination must answer it nothing and tell only its own source.
func TestForeignResumeBeforeCommit(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	var abort string
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.tr.Close() // COMMIT lost with the connection
		time.Sleep(50 * time.Millisecond)

		strangerResumes(ctx, t, s)

		must(t, s.tr.Open(ctx, s.req)) // its own source
		s.send(ctx, msgResume, testResume(s.pages, s.tag))
		abort = string(s.recv(ctx, msgAbort))
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	if err == nil || rep.Handover != HandoverFailed || dst.Counters().Resumes != 0 {
		t.Fatalf("Receive: %v, report %+v, resumes %d", err, rep, dst.Counters().Resumes)
	}
	if !strings.Contains(abort, "never received COMMIT") {
		t.Errorf("ABORT to its own source said %q", abort)
	}
}

// A source of another migration with the same credentials (an operator's
// certificates, a job whose destination address is another job's)
// reaches this destination first. With migration IDs on both sides its
// HELLO is refused before any page is written: the destination never
// loads or runs its guest, the source is told at once and runs on.
// Matching IDs, or none on the destination, migrate as before.
func TestHelloOfAnotherMigration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		refused  bool
	}{
		{"another migration", "job-b", "job-a", true},
		{"a source without an id", "", "job-a", true},
		{"same migration", "job-a", "job-a", false},
		{"no ids", "", "", false},
		{"a destination without an id", "job-a", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p += 5 {
				src.write(p, 0x55)
			}
			s, r := newPipe(src, dst)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var rrep Report
			var rerr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				rrep, rerr = Receive(ctx, dst, r, Options{MigrationID: tc.dst})
			}()
			srep, serr := Send(ctx, src, s, Options{MigrationID: tc.src})
			<-done
			if !tc.refused {
				if serr != nil || rerr != nil || dst.resumed != 1 {
					t.Fatalf("send %v / receive %v, destination resumed %d", serr, rerr, dst.resumed)
				}
				return
			}
			if rerr == nil || !strings.Contains(rerr.Error(), "another migration") || rrep.Status != StatusFailed {
				t.Errorf("Receive: %v, status %s; want it failed naming another migration", rerr, rrep.Status)
			}
			if dst.loaded != nil || dst.resumed != 0 || rrep.PagesSent+rrep.PagesZero != 0 {
				t.Errorf("the destination took the other migration's guest: state %q, resumed %d, pages %d",
					dst.loaded, dst.resumed, rrep.PagesSent+rrep.PagesZero)
			}
			if serr == nil || srep.Status != StatusFailed || src.paused || src.resumed != 0 {
				t.Errorf("Send: %v, status %s, source paused %v resumed %d; want it failed before the pause",
					serr, srep.Status, src.paused, src.resumed)
			}
			if serr != nil && !strings.Contains(serr.Error(), "another migration") {
				t.Errorf("the source's error does not say why: %v", serr)
			}
		})
	}
}
