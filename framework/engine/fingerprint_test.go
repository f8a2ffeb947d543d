package engine

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"
)

// progressLog collects one side's Progress events.
type progressLog struct {
	mu     sync.Mutex
	events []Progress
}

func (l *progressLog) add(p Progress) { l.mu.Lock(); l.events = append(l.events, p); l.mu.Unlock() }

// prints returns the tag fingerprints the events carried, in order,
// and whether an event before the bulk phase carried one.
func (l *progressLog) prints() (seen []string, early bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.events {
		if p.TagFingerprint == "" {
			continue
		}
		seen = append(seen, p.TagFingerprint)
		early = early || p.Phase == PhaseWaiting || p.Phase == PhaseSetup
	}
	return seen, early
}

// TestTagFingerprintPairsSides: both sides of one migration without an
// id, whose tag is random and shared only by HELLO, report the same tag
// fingerprint, in their reports and in their progress from HELLO on;
// a second id-less migration reports another. This is what lets
// migrate -resolve tell two hand-started migrations apart (cmd/migrate,
// resolver.pair), where it had only two empty ids to compare.
func TestTagFingerprintPairsSides(t *testing.T) {
	run := func() (src, dst string) {
		srcVM, dstVM := everySeventh(t, 0x42)
		var sl, dl progressLog
		s, r := newPipe(srcVM, dstVM)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rcv := startReceive(ctx, dstVM, r, Options{Progress: dl.add})
		sopt := Options{Progress: sl.add}
		srep, serr := Send(ctx, srcVM, s, sopt)
		rrep, rerr := rcv.wait()
		if serr != nil || rerr != nil {
			t.Fatalf("send %v / receive %v", serr, rerr)
		}
		for side, l := range map[string]*progressLog{"source": &sl, "destination": &dl} {
			rep := map[string]Report{"source": srep, "destination": rrep}[side]
			seen, early := l.prints()
			if early || len(seen) == 0 {
				t.Errorf("%s: progress fingerprints %q (one before HELLO: %v)", side, seen, early)
			}
			for _, f := range seen {
				if f != rep.TagFingerprint {
					t.Errorf("%s: progress says fingerprint %q, its report %q", side, f, rep.TagFingerprint)
				}
			}
		}
		return srep.TagFingerprint, rrep.TagFingerprint
	}
	s1, d1 := run()
	s2, d2 := run()
	t.Logf("first migration %s/%s, second %s/%s", s1, d1, s2, d2)
	for _, f := range []string{s1, d1, s2, d2} {
		if !ValidTagFingerprint(f) {
			t.Fatalf("fingerprint %q is not %d lower-case hex digits", f, TagFingerprintLen)
		}
	}
	if s1 != d1 || s2 != d2 {
		t.Errorf("the sides of one migration differ: %s/%s, %s/%s", s1, d1, s2, d2)
	}
	if s1 == s2 {
		t.Errorf("two id-less migrations report the same fingerprint %s", s1)
	}
}

// TestTagFingerprintOfTakenHello: a destination reports the fingerprint
// of the HELLO it took, never that of one it refused (another
// migration's source that reached it first), and nothing before; and
// the fingerprint does not show the tag it is made from.
func TestTagFingerprintOfTakenHello(t *testing.T) {
	src, dst := twoRegions(t)
	s, r := newPipe(src, dst)
	d := newReopens(r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dl progressLog
	rcv := startReceive(ctx, dst, d, Options{MigrationID: "job-a", Log: testLogger(t), Progress: dl.add})
	other, oerr := Send(ctx, src, s, Options{MigrationID: "job-b"})
	if oerr == nil || other.TagFingerprint == "" {
		t.Fatalf("another migration's Send: %v, fingerprint %q; want refused after its HELLO went out", oerr, other.TagFingerprint)
	}
	if err := d.listening(ctx, rcv.done); err != nil {
		_, rerr := rcv.wait()
		t.Fatalf("after another migration's HELLO: %v (Receive: %v)", err, rerr)
	}
	if seen, _ := dl.prints(); len(seen) != 0 {
		t.Errorf("the destination reports fingerprints %q after refusing a HELLO: it took none", seen)
	}
	own, serr := Send(ctx, src, s, Options{MigrationID: "job-a"})
	rrep, rerr := rcv.wait()
	if serr != nil || rerr != nil {
		t.Fatalf("send %v / receive %v", serr, rerr)
	}
	if rrep.TagFingerprint != own.TagFingerprint || rrep.TagFingerprint == other.TagFingerprint {
		t.Errorf("destination %q, its source %q, the refused source %q", rrep.TagFingerprint, own.TagFingerprint, other.TagFingerprint)
	}
	if tag := tagFor("job-a"); strings.Contains(hex.EncodeToString(tag[:]), rrep.TagFingerprint) {
		t.Errorf("fingerprint %s shows the tag %x", rrep.TagFingerprint, tag)
	}
}
