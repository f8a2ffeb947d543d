package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// The destination refuses a COMMIT the page check forbids
// (receiver.commitRefused): one after a verdict of differing pages, or
// one while the check is open (HASHES still due, or promised in HELLO
// and none came yet). A source that keeps the protocol never writes
// such a COMMIT; a scripted one plays a buggy source. Before, the
// destination ran the VM on it, a copy known to be wrong or not yet
// checked, and the source's rule alone kept that from happening.

// hashesOf is a HASHES message for pages [first, first+n) of s's source,
// free pages as hashFree; page wrong, if in range, gets a hash it does
// not have.
func hashesOf(s *script, first, n, wrong uint64) []byte {
	b := make([]byte, 16, 16+8*n)
	binary.LittleEndian.PutUint64(b, first)
	binary.LittleEndian.PutUint64(b[8:], n)
	for p := first; p < first+n; p++ {
		h := uint64(hashFree)
		if !s.free.Test(p) {
			h = pageHash(s.src.Page(p))
		}
		if p == wrong {
			h ^= 1
		}
		b = binary.LittleEndian.AppendUint64(b, h)
	}
	return b
}

// commitCase is what a scripted source does between LOADED and its
// COMMIT, and whether the destination must run the VM on that COMMIT.
type commitCase struct {
	name    string
	promise bool                                 // HELLO's helloCheck
	check   func(ctx context.Context, s *script) // after LOADED, before COMMIT
	runs    bool                                 // RUNNING, not ABORT
	why     string                               // the refusal names it
}

// wrongPage is a page the destination holds at the check: sent in the
// bulk pass, not free, not dirtied after (absent lists what it lacks).
func wrongPage(s *script) uint64 {
	for p := range s.pages {
		if !s.free.Test(p) && !s.absent.Test(p) {
			return p
		}
	}
	s.t.Fatal("no page held at the check")
	return 0
}

// commitCases: the check's verdict bad, open (promised, no HASHES;
// half the HASHES in, promised or not), clean, and no check at all.
func commitCases() []commitCase {
	verdict := func(wantBad bool) func(ctx context.Context, s *script) {
		return func(ctx context.Context, s *script) {
			wrong := ^uint64(0)
			if wantBad {
				wrong = wrongPage(s)
			}
			s.send(ctx, msgHashes, hashesOf(s, 0, s.pages, wrong))
			v := s.recv(ctx, msgVerified)
			if bad := binary.LittleEndian.Uint64(v); (bad != 0) != wantBad {
				s.t.Errorf("VERIFIED counts %d differing pages; want bad %v", bad, wantBad)
				panic(errScript)
			}
		}
	}
	half := func(ctx context.Context, s *script) { s.send(ctx, msgHashes, hashesOf(s, 0, s.pages/2, ^uint64(0))) }
	return []commitCase{
		{name: "after a bad VERIFIED", promise: true, check: verdict(true), why: "differing pages"},
		{name: "promised, before HASHES", promise: true, check: func(context.Context, *script) {}, why: "promised in HELLO"},
		{name: "during HASHES", promise: true, check: half, why: "during the page check"},
		{name: "during HASHES, not promised", check: half, why: "during the page check"},
		{name: "after a clean VERIFIED", promise: true, check: verdict(false), runs: true},
		{name: "no check", check: func(context.Context, *script) {}, runs: true},
	}
}

// toLoaded is a pre-copy source up to LOADED: HELLO with flags, every
// page in one pass, the pause, STATE.
func (s *script) toLoaded(ctx context.Context, flags uint32) {
	must(s.t, s.tr.Open(ctx, s.req))
	s.send(ctx, msgHello, encodeHello(s.layout, flags, s.tag))
	s.recv(ctx, msgReady)
	must(s.t, s.tr.SendPages(ctx, []transport.PageRun{{First: 0, Count: s.pages, Kind: transport.KindData}}))
	must(s.t, s.src.Pause(ctx))
	must(s.t, s.tr.Flush(ctx))
	state, err := s.src.SaveState(ctx)
	must(s.t, err)
	s.send(ctx, msgState, encodeStateChunk(uint64(len(state)), 0, state))
	s.recv(ctx, msgLoaded)
}

// commitAnswer writes COMMIT and returns the destination's answer.
func (s *script) commitAnswer(ctx context.Context) transport.Message {
	s.send(ctx, msgCommit, nil)
	m, err := s.tr.RecvMessage(ctx)
	if err != nil {
		s.t.Errorf("script: no answer to COMMIT: %v", err)
		panic(errScript)
	}
	return m
}

// checkCommitOutcome checks the destination's end for c: it ran the VM
// and answered RUNNING, or refused: failed, never resumed, ABORT naming
// why.
func checkCommitOutcome(t *testing.T, c commitCase, answer transport.Message, dst *vmtest.VM, rep Report, err error) {
	t.Helper()
	t.Logf("destination: %v; answered %s %q", err, msgName(answer.Kind), answer.Payload)
	if c.runs {
		if answer.Kind != msgRunning || dst.Counters().Resumes != 1 || dst.State() != vmtest.StateRunning {
			t.Errorf("answered %s, resumed %d times, VM %v; want RUNNING, the VM running", msgName(answer.Kind),
				dst.Counters().Resumes, dst.State())
		}
		return
	}
	if !errors.Is(err, errCommitRefused) || !strings.Contains(err.Error(), c.why) || rep.Status != StatusFailed ||
		rep.Handover != HandoverFailed {
		t.Errorf("Receive: %v, status %s, handover %s; want failed, COMMIT refused naming %q", err, rep.Status, rep.Handover, c.why)
	}
	if n := dst.Counters().Resumes; n != 0 || dst.State() == vmtest.StateRunning {
		t.Errorf("destination resumed %d times, VM %v; want never resumed", n, dst.State())
	}
	if answer.Kind != msgAbort || !strings.Contains(string(answer.Payload), "COMMIT refused") ||
		!strings.Contains(string(answer.Payload), c.why) {
		t.Errorf("answered %s %q; want an ABORT saying why COMMIT was refused", msgName(answer.Kind), answer.Payload)
	}
}

// TestCommitGuardPrecopy: a pre-copy destination against a scripted
// source that commits after each page-check outcome.
func TestCommitGuardPrecopy(t *testing.T) {
	for _, c := range commitCases() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			src, dst, sendTr, recvTr, sc, dc := pipeGuests(t)
			wait := receiveAsync(ctx, dst, recvTr, Options{Credentials: dc, SwitchoverTimeout: 10 * time.Second, Log: testLogger(t)})
			s := newScript(t, src, sendTr, sc)
			defer sendTr.Close()
			flags := uint32(helloTransportTag)
			if c.promise {
				flags |= helloCheck
			}
			var answer transport.Message
			failed := runScript(func() {
				s.toLoaded(ctx, flags)
				c.check(ctx, s)
				answer = s.commitAnswer(ctx)
			})
			rep, err := wait()
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			checkCommitOutcome(t, c, answer, dst, rep, err)
		})
	}
}

// TestCommitGuardPostcopy: the same against a post-copy destination,
// which lacks the pages the source still owes; its check runs before
// COMMIT too (pages it lacks are compared as they land). One that runs
// gets its pages and completes.
func TestCommitGuardPostcopy(t *testing.T) {
	for _, c := range commitCases() {
		t.Run(c.name, func(t *testing.T) {
			s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
			if c.promise {
				s.helloFlags |= helloCheck
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			wait := receiveAsync(ctx, dst, rcv, opt)
			defer s.tr.Close()
			never, stale := pcPages(s)
			var answer transport.Message
			failed := runScript(func() {
				s.precopy(ctx, never, stale, false)
				c.check(ctx, s)
				go s.serve(ctx)
				answer = s.commitAnswer(ctx)
				switch answer.Kind {
				case msgRunning:
					s.push(ctx)
					s.settled(ctx)
				case msgAbort:
					s.send(ctx, msgAbort, nil) // heard (sender.commit); else it lingers (pcRecv.refuseCommit)
				}
			})
			rep, err := wait()
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			if c.runs && (err != nil || rep.Status != StatusCompleted) {
				t.Errorf("Receive: %v, status %s; want completed", err, rep.Status)
			}
			checkCommitOutcome(t, c, answer, dst, rep, err)
		})
	}
}
