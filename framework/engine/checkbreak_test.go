package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// TestCheckBreakPrecopy: the stream breaks during the page check, after
// LOADED. The source never commits without VERIFIED: it resumes its VM
// (failed). The pre-copy destination holds the whole guest and cannot
// tell a source that resumed from one whose VMM died: it stays
// handover-unknown, never resumed, so that beside a dead source its
// copy is not lost (docs/model, property (b), mutant 8); migrate's
// resolve discards it beside a running source. So it does when the
// break comes before the first HASHES, though HELLO promised the check
// (helloCheck: no COMMIT can have been written), and right after its
// VERIFIED went out.
func TestCheckBreakPrecopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*pipe)
	}{
		{"before the first HASHES", lose(true, msgHashes, true)},
		{"after the first HASHES", func(p *pipe) {
			p.delivered = func(toDst bool, m transport.Message) {
				if toDst && m.Kind == msgHashes {
					p.cut()
				}
			}
		}},
		{"right after VERIFIED", lose(false, msgVerified, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layout := [][2]uint64{{0, 2 * hashChunk * 4096}} // two HASHES
			src, dst := newFakeVM(t, layout...), newFakeVM(t, layout...)
			for p := uint64(0); p < src.layout.Pages(); p += 97 {
				src.write(p, 0x3c)
			}
			srep, serr, rrep, rerr := migrate(t, src, dst, Options{VerifyPages: true, SwitchoverTimeout: time.Second}, tc.tweak)
			t.Logf("source: %v\ndestination: %v", serr, rerr)
			if srep.Status != StatusFailed || src.resumed == 0 {
				t.Errorf("source %s, resumed %d times; want failed, resumed", srep.Status, src.resumed)
			}
			if rrep.Status != StatusHandoverUnknown || !errors.Is(rerr, ErrHandoverUnknown) || dst.resumed != 0 {
				t.Errorf("destination %s (%v), resumed %d times; want handover-unknown, never resumed", rrep.Status, rerr, dst.resumed)
			}
		})
	}
}

// TestCheckBreakBadPages: the page check found differing pages, and the
// stream breaks right after VERIFIED (which says so) went out. The
// source never commits on that verdict, and the destination's copy is
// known to be wrong: it fails (discarded), never handover-unknown, so
// that no resolve beside a dead source can run a copy the check
// rejected. Before, it ended handover-unknown.
func TestCheckBreakBadPages(t *testing.T) {
	layout := [][2]uint64{{0, 2 * hashChunk * 4096}}
	src, dst := newFakeVM(t, layout...), newFakeVM(t, layout...)
	for p := uint64(0); p < src.layout.Pages(); p += 97 {
		src.write(p, 0x3c)
	}
	srep, serr, rrep, rerr := migrate(t, src, dst, Options{VerifyPages: true, SwitchoverTimeout: time.Second}, func(p *pipe) {
		p.delivered = func(toDst bool, m transport.Message) {
			if toDst && m.Kind == msgHashes {
				dst.write(97, 0xee) // the destination's copy of page 97 goes wrong before it is compared
			}
		}
		lose(false, msgVerified, true)(p)
	})
	t.Logf("source: %v\ndestination: %v", serr, rerr)
	if srep.Status != StatusFailed || src.resumed == 0 {
		t.Errorf("source %s, resumed %d times; want failed, resumed", srep.Status, src.resumed)
	}
	if rerr == nil || !strings.Contains(rerr.Error(), "differing pages") || strings.Contains(rerr.Error(), "lacks pages") {
		t.Errorf("destination: %v; want it to name the differing pages, not pages it lacks (a pre-copy destination lacks none)", rerr)
	}
	if rrep.Status != StatusFailed || errors.Is(rerr, ErrHandoverUnknown) || dst.resumed != 0 {
		t.Errorf("destination %s (%v), resumed %d times; want failed (its copy differs), never resumed", rrep.Status, rerr, dst.resumed)
	}
}

// TestPostcopyCheckBreakFails: a post-copy destination, which lacks the
// pages the source still owes, whose stream breaks (or stalls) during
// the page check, after a first HASHES and before it began to send
// VERIFIED, fails at once and tells the source if it can (ABORT): the
// source commits only on VERIFIED, and on a failed check it resumes
// its VM without reconnecting. Before, the destination waited
// reconnect_timeout for a RESUME that never comes (pcRecv.uncommitted)
// and ended handover-unknown.
func TestPostcopyCheckBreakFails(t *testing.T) {
	for _, silent := range []bool{false, true} {
		name := "cut"
		if silent {
			name = "silent"
		}
		t.Run(name, func(t *testing.T) {
			s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
			opt.ReconnectTimeout = 20 * time.Second
			opt.StallTimeout, opt.SwitchoverTimeout = stallLimit, stallLimit
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			wait := receiveAsync(ctx, dst, rcv, opt)
			never, stale := pcPages(s)
			var abort []byte
			failed := runScript(func() {
				s.precopy(ctx, never, stale, false)
				n := s.pages / 2 // the first chunk of two
				b := make([]byte, 16, 16+8*n)
				binary.LittleEndian.PutUint64(b[8:], n)
				for p := range n {
					h := uint64(hashFree)
					if !s.free.Test(p) {
						h = pageHash(s.src.Page(p))
					}
					b = binary.LittleEndian.AppendUint64(b, h)
				}
				s.send(ctx, msgHashes, b)
				if !silent {
					s.tr.Close()
					return
				}
				abort = s.recv(ctx, msgAbort) // the source stopped: nothing more comes
			})
			rep, err := wait()
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			t.Logf("destination: %v; ABORT %q", err, abort)
			if ctx.Err() != nil {
				t.Fatal("the destination waited until the test's deadline")
			}
			if err == nil || errors.Is(err, ErrHandoverUnknown) || rep.Status != StatusFailed || rep.Handover != HandoverFailed ||
				dst.Counters().Resumes != 0 {
				t.Errorf("destination: %v, status %s, handover %s, %d resumes; want failed, never run", err, rep.Status,
					rep.Handover, dst.Counters().Resumes)
			}
		})
	}
}

// checkCut is the source's transport in post-copy with the page check.
// The guest writes a page as the first Flush goes out (the bulk pass,
// so post-copy owes that page whatever the guest's own writer did);
// old clears helloCheck from HELLO (a source from before the flag); the
// connection dies as the first HASHES goes out (written, never
// delivered), or, with atVerified, as VERIFIED arrives (the source never
// reads it).
type checkCut struct {
	transport.Transport
	src        *vmtest.VM
	old        bool
	atVerified bool
	wrote      sync.Once
	cuts       atomic.Int32
}

func (c *checkCut) Flush(ctx context.Context) error {
	c.wrote.Do(func() { _ = c.src.Write(100 << 12) }) // page 100: not free (pcFree)
	return c.Transport.Flush(ctx)
}

func (c *checkCut) SendMessage(ctx context.Context, m transport.Message) error {
	switch {
	case m.Kind == msgHello && c.old:
		b := bytes.Clone(m.Payload) // flags: the u32 before the 16-byte tag (encodeHello)
		f := b[len(b)-20:]
		binary.LittleEndian.PutUint32(f, binary.LittleEndian.Uint32(f)&^helloCheck)
		m.Payload = b
	case m.Kind == msgHashes && !c.atVerified && c.cuts.Add(1) == 1:
		c.Transport.Close()
		return nil
	}
	return c.Transport.SendMessage(ctx, m)
}

func (c *checkCut) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := c.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgVerified && c.atVerified && c.cuts.Add(1) == 1 {
		c.Transport.Close()
		return transport.Message{}, transport.ErrClosed
	}
	return m, err
}

// missingCount says how many pages a report's PagesMissing counts, or
// that it counts none (nil: not a post-copy destination's report).
func missingCount(p *uint64) string {
	if p == nil {
		return "none reported"
	}
	return fmt.Sprint(*p)
}

// TestPostcopyCheckPromised: both engines in post-copy with the page
// check; the connection breaks after LOADED. The source never commits
// without VERIFIED: it resumes its VM (failed) and never reconnects.
// Its HELLO promised the check (helloCheck), so a destination that
// breaks before it began to send VERIFIED knows no COMMIT was written,
// and, lacking owed pages, holds no whole guest: it fails at once,
// also before the first HASHES (before the flag it listened
// reconnect_timeout for a RESUME that never comes, then ended
// handover-unknown). Without the flag (a source from before it) and
// after VERIFIED went out (a COMMIT may be on its way) it waits for that
// RESUME as before, and ends handover-unknown when none comes.
func TestPostcopyCheckPromised(t *testing.T) {
	for _, tc := range []struct {
		name            string
		old, atVerified bool
		want            Handover
	}{
		{"before the first HASHES", false, false, HandoverFailed},
		{"before the first HASHES, source without the flag", true, false, HandoverUnknown},
		{"right after VERIFIED", false, true, HandoverUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reconnect := time.Second // waited out when the handover stays unknown
			if tc.want == HandoverFailed {
				reconnect = 20 * time.Second // not waited out: the test's bound
			}
			c := &checkCut{old: tc.old, atVerified: tc.atVerified}
			var src *vmtest.VM
			start := time.Now()
			r, dst := bothEnginesOn(t, func(str transport.Transport, s *vmtest.VM) transport.Transport {
				c.Transport, c.src, src = str, s, s
				return c
			}, func(sopt, dopt *Options) { sopt.VerifyPages, dopt.ReconnectTimeout = true, reconnect })
			took := time.Since(start)
			t.Logf("source: %v\ndestination: %v (%v)", r.serr, r.derr, took.Round(time.Millisecond))
			if c.cuts.Load() != 1 {
				t.Fatalf("the connection was cut %d times: the test did not test it", c.cuts.Load())
			}
			if r.drep.PagesMissing == nil || *r.drep.PagesMissing == 0 {
				t.Fatalf("the destination lacked no page (pages missing: %s): the test did not test it", missingCount(r.drep.PagesMissing))
			}
			if r.srep.Status != StatusFailed || src.Counters().Resumes == 0 {
				t.Errorf("source %s, %d resumes; want failed, resumed", r.srep.Status, src.Counters().Resumes)
			}
			if r.drep.Handover != tc.want || dst.Counters().Resumes != 0 {
				t.Errorf("destination %s (%v), %d resumes; want %s, never run", r.drep.Handover, r.derr,
					dst.Counters().Resumes, tc.want)
			}
			if tc.want == HandoverFailed && (errors.Is(r.derr, ErrHandoverUnknown) || took >= reconnect/2) {
				t.Errorf("destination: %v after %v; want failed at once, not after reconnect_timeout %v", r.derr,
					took.Round(time.Millisecond), reconnect)
			}
		})
	}
}

// failLoaded is the destination's transport whose LOADED does not get
// out (the send fails; nothing travels).
type failLoaded struct{ transport.Transport }

func (f failLoaded) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgLoaded {
		return errInjected
	}
	return f.Transport.SendMessage(ctx, m)
}

// TestPostcopyLoadedLostCheckPromised: a post-copy destination loads
// the state and its LOADED does not get out (nothing travels). With the
// check promised in HELLO (helloCheck) no COMMIT can come before its
// VERIFIED: lacking owed pages it fails and says so (ABORT), never runs;
// holding every page it ends handover-unknown at once (its copy may be
// the only one, and no RESUME can come: TestPostcopyCheckOpenAllHeld).
// A source without the flag may have read LOADED, or part of it, and
// committed: the destination listens for its RESUME (pcRecv.uncommitted)
// and answers it with ABORT, carrying its tag; the source here, which
// reconnects, is told so, and the destination fails, never run. Until
// 2026-12-07 that destination ended handover-unknown at once and such a
// source reconnected to nobody (TestPostcopyLoadedLost).
func TestPostcopyLoadedLostCheckPromised(t *testing.T) {
	for _, tc := range []struct {
		name              string
		promised, allHeld bool
		want              Handover
		told, resumes     bool // ABORT read on the session; a RESUME sent after it ended
	}{
		{"promised", true, false, HandoverFailed, true, false},
		{"promised, every page held", true, true, HandoverUnknown, false, false},
		{"not promised", false, false, HandoverFailed, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
			if tc.promised {
				s.helloFlags |= helloCheck
			}
			opt.ReconnectTimeout = 20 * time.Second // not waited out: the test's bound
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			wait := receiveAsync(ctx, dst, failLoaded{rcv}, opt)
			never, stale := pcPages(s)
			if tc.allHeld {
				never, stale = nil, nil
			}
			var m transport.Message
			var rerr error
			var answer []byte
			failed := runScript(func() {
				s.toState(ctx, never, stale)
				m, rerr = s.tr.RecvMessage(ctx) // ABORT, or the end of the session
				if !tc.resumes {
					return
				}
				// A source that read LOADED and committed: its COMMIT
				// lost with the session, it reconnects (recommit).
				s.tr.Close()
				must(t, s.tr.Open(ctx, s.req))
				s.send(ctx, msgResume, testResume(s.pages, s.tag))
				answer = s.recv(ctx, msgAbort)
				s.send(ctx, msgAbort, nil) // heard (pcSend.answer)
			})
			rep, err := wait()
			took := time.Since(start)
			if failed {
				t.Fatalf("script failed; Receive: %v (%v)", err, took.Round(time.Millisecond))
			}
			t.Logf("destination: %v (%v); the source read %s %q (%v)", err, took.Round(time.Millisecond),
				msgName(m.Kind), m.Payload, rerr)
			if rep.Handover != tc.want || dst.Counters().Resumes != 0 || (rerr == nil && m.Kind == msgAbort) != tc.told {
				t.Errorf("destination %s (%v), %d resumes, the source read %s (%v); want %s, never run, ABORT told: %v",
					rep.Handover, err, dst.Counters().Resumes, msgName(m.Kind), rerr, tc.want, tc.told)
			}
			if took >= opt.ReconnectTimeout/2 {
				t.Errorf("the destination ended after %v; want at once (it ended, or was answered), not after reconnect_timeout",
					took.Round(time.Millisecond))
			}
			if !tc.resumes {
				return
			}
			if why, answers := resumeAbort(answer, s.tag); !answers || !strings.Contains(string(why), "never received COMMIT") {
				t.Errorf("ABORT said %q; want the answer to the RESUME (its tag first) saying it never received COMMIT", answer)
			}
		})
	}
}

// TestHelloCheckFlag: Send promises the page check in HELLO (helloCheck)
// exactly when it runs one (VerifyPages, or VerifyFree, which implies
// it): a destination told so fails, in post-copy, on a break it would
// otherwise take for a lost COMMIT.
func TestHelloCheckFlag(t *testing.T) {
	for _, opt := range []Options{{}, {VerifyPages: true}, {VerifyFree: true}} {
		src, dst := newFakeVM(t, [2]uint64{0, 64 << 10}), newFakeVM(t, [2]uint64{0, 64 << 10})
		var flags atomic.Int64
		flags.Store(-1)
		_, serr, _, rerr := migrate(t, src, dst, opt, func(p *pipe) {
			p.delivered = func(toDst bool, m transport.Message) {
				if h, err := decodeHello(m.Payload); toDst && m.Kind == msgHello && err == nil {
					flags.Store(int64(h.Flags))
				}
			}
		})
		if serr != nil || rerr != nil || flags.Load() < 0 {
			t.Fatalf("%+v: send %v, receive %v, HELLO flags %d", opt, serr, rerr, flags.Load())
		}
		if got, want := flags.Load()&helloCheck != 0, opt.VerifyPages || opt.VerifyFree; got != want {
			t.Errorf("VerifyPages %v, VerifyFree %v: HELLO flags %#x; want helloCheck %v", opt.VerifyPages, opt.VerifyFree,
				flags.Load(), want)
		}
	}
}

// TestPostcopyCheckOpenAllHeld: a post-copy destination that holds
// every page (the source owed none at the switch) and whose stream
// breaks while the page check is open: HELLO promised it (helloCheck)
// and no HASHES came yet, or a HASHES came and more are due. No COMMIT
// can have been written, so no RESUME can come either: it ends
// handover-unknown at once, as a pre-copy destination does (it holds
// the whole guest, perhaps the only copy), instead of listening
// reconnect_timeout for that RESUME first. Without the promise before
// the first HASHES, and once VERIFIED went out, a COMMIT may have been
// written: it listens for the source's RESUME as before.
func TestPostcopyCheckOpenAllHeld(t *testing.T) {
	for _, tc := range []struct {
		name     string
		promised bool
		hashes   int // HASHES chunks sent before the cut: 0, 1 (of 2), 2 (VERIFIED read)
		listens  bool
	}{
		{"promised, before the first HASHES", true, 0, false},
		{"not promised, after the first HASHES", false, 1, false},
		{"not promised, before the first HASHES", false, 0, true},
		{"promised, right after VERIFIED", true, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
			if tc.promised {
				s.helloFlags |= helloCheck
			}
			opt.ReconnectTimeout = time.Second // waited out when it listens
			if !tc.listens {
				opt.ReconnectTimeout = 20 * time.Second // not waited out: the test's bound
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			wait := receiveAsync(ctx, dst, rcv, opt)
			failed := runScript(func() {
				s.toState(ctx, nil, nil) // nothing owed: the destination holds every page
				s.recv(ctx, msgLoaded)
				half := s.pages / 2
				for c := range tc.hashes {
					b := make([]byte, 16, 16+8*half)
					binary.LittleEndian.PutUint64(b, uint64(c)*half)
					binary.LittleEndian.PutUint64(b[8:], half)
					for p := uint64(c) * half; p < uint64(c+1)*half; p++ {
						h := uint64(hashFree)
						if !s.free.Test(p) {
							h = pageHash(s.src.Page(p))
						}
						b = binary.LittleEndian.AppendUint64(b, h)
					}
					s.send(ctx, msgHashes, b)
				}
				if tc.hashes == 2 {
					s.recv(ctx, msgVerified)
				}
				s.tr.Close()
			})
			rep, err := wait()
			took := time.Since(start)
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			t.Logf("destination: %v (%v)", err, took.Round(time.Millisecond))
			if rep.PagesMissing != nil && *rep.PagesMissing != 0 {
				t.Fatalf("the destination lacked %d pages: the test did not test it", *rep.PagesMissing)
			}
			if rep.Handover != HandoverUnknown || !errors.Is(err, ErrHandoverUnknown) || dst.Counters().Resumes != 0 {
				t.Errorf("destination %s (%v), %d resumes; want handover-unknown, never run", rep.Handover, err,
					dst.Counters().Resumes)
			}
			listened := strings.Contains(fmt.Sprint(err), "no source reconnected within reconnect_timeout")
			if listened != tc.listens || !tc.listens && took >= opt.ReconnectTimeout/2 {
				t.Errorf("destination listened for a RESUME: %v (after %v); want %v", listened, took.Round(time.Millisecond),
					tc.listens)
			}
		})
	}
}

// sentThenDies is the destination's transport whose first message of
// kind reaches the source, after which the session breaks and the send
// fails: the destination cannot tell whether the source read it.
type sentThenDies struct {
	transport.Transport
	kind uint32
	died atomic.Int32
}

func (v *sentThenDies) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind != v.kind || v.died.Add(1) != 1 {
		return v.Transport.SendMessage(ctx, m)
	}
	if err := v.Transport.SendMessage(ctx, m); err != nil {
		return err
	}
	v.Transport.Close()
	return fmt.Errorf("the session broke as %s went out: %w", msgName(m.Kind), transport.ErrClosed)
}

// TestPostcopyVerifiedLost: both engines in post-copy with the page
// check; the destination's VERIFIED reaches the source, but its send
// fails as the session breaks. The source commits on it; its COMMIT
// is lost with the session, so it reconnects with RESUME (recommit).
// The destination, which never got COMMIT, must listen for that RESUME
// and answer ABORT (pcRecv.uncommitted), as for a break once VERIFIED's
// send began: the source resumes the VM at once, the destination fails
// and never ran it. Before, the destination ended handover-unknown as
// its send failed, and the source reconnected to nobody for its
// reconnect_timeout, then ended handover-unknown too.
func TestPostcopyVerifiedLost(t *testing.T) {
	const reconnect = 20 * time.Second // not waited out: the test's bound
	d := &sentThenDies{kind: msgVerified}
	b := &dirtyBulk{}
	start := time.Now()
	r, dst := bothEnginesWrapped(t, b.wrap, func(dtr transport.Transport) transport.Transport { d.Transport = dtr; return d },
		func(sopt, dopt *Options) {
			sopt.VerifyPages, sopt.ReconnectTimeout, dopt.ReconnectTimeout = true, reconnect, reconnect
		})
	took := time.Since(start)
	t.Logf("source: %v\ndestination: %v (%v)", r.serr, r.derr, took.Round(time.Millisecond))
	b.wrote(t)
	if d.died.Load() != 1 {
		t.Fatalf("%d VERIFIED sent: the test did not test it", d.died.Load())
	}
	if r.drep.PagesMissing == nil || *r.drep.PagesMissing == 0 {
		t.Fatalf("the destination lacked no page (pages missing: %s): the test did not test it", missingCount(r.drep.PagesMissing))
	}
	abortHeard(t, r, dst, took, reconnect)
	if !strings.Contains(fmt.Sprint(r.derr), "the source reconnected and was told to resume the VM") {
		t.Errorf("destination: %v; want it to say the source reconnected and was told to resume", r.derr)
	}
}

// TestPostcopyLoadedLost: both engines in post-copy without the page
// check; the destination's LOADED reaches the source, but its send fails
// as the session breaks. The source commits on it; its COMMIT is lost
// with the session, so it reconnects with RESUME (recommit). The
// destination, which never got COMMIT, must listen for that RESUME and
// answer ABORT (pcRecv.uncommitted), as after a break once LOADED went
// out: the source resumes the VM at once, the destination fails and
// never ran it. Before, the destination ended handover-unknown as its
// send failed, and the source reconnected to nobody for its
// reconnect_timeout, then ended handover-unknown too.
func TestPostcopyLoadedLost(t *testing.T) {
	const reconnect = 20 * time.Second // not waited out: the test's bound
	d := &sentThenDies{kind: msgLoaded}
	b := &dirtyBulk{}
	start := time.Now()
	r, dst := bothEnginesWrapped(t, b.wrap, func(dtr transport.Transport) transport.Transport { d.Transport = dtr; return d },
		func(sopt, dopt *Options) { sopt.ReconnectTimeout, dopt.ReconnectTimeout = reconnect, reconnect })
	took := time.Since(start)
	t.Logf("source: %v\ndestination: %v (%v)", r.serr, r.derr, took.Round(time.Millisecond))
	b.wrote(t)
	if d.died.Load() != 1 {
		t.Fatalf("%d LOADED sent: the test did not test it", d.died.Load())
	}
	if r.drep.PagesMissing == nil || *r.drep.PagesMissing == 0 {
		t.Fatalf("the destination lacked no page (pages missing: %s): the test did not test it", missingCount(r.drep.PagesMissing))
	}
	abortHeard(t, r, dst, took, reconnect)
	if !strings.Contains(fmt.Sprint(r.derr), "the source reconnected and was told to resume the VM") {
		t.Errorf("destination: %v; want it to say the source reconnected and was told to resume", r.derr)
	}
}

// statsWhileClosed is the destination's transport whose VERIFIED send
// fails (nothing travels; not a stall) and which counts the Stats calls
// made while no session is open: after a Close, before the next Open
// that succeeded, but for the first after each Close, which asks the
// closed session's totals (endSession).
type statsWhileClosed struct {
	transport.Transport
	closed  atomic.Bool
	counted atomic.Bool // the closed session's totals were asked
	calls   atomic.Int32
}

func (s *statsWhileClosed) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgVerified {
		return errInjected
	}
	return s.Transport.SendMessage(ctx, m)
}

func (s *statsWhileClosed) Open(ctx context.Context, req transport.OpenRequest) error {
	err := s.Transport.Open(ctx, req)
	if err == nil {
		s.closed.Store(false)
	}
	return err
}

func (s *statsWhileClosed) Close() error {
	s.counted.Store(false)
	s.closed.Store(true)
	return s.Transport.Close()
}

func (s *statsWhileClosed) Stats(ctx context.Context) (transport.Stats, error) {
	if s.closed.Load() && s.counted.Swap(true) {
		s.calls.Add(1)
	}
	return s.Transport.Stats(ctx)
}

// TestVerifiedLostWatchStopped: a post-copy destination whose VERIFIED
// send fails (not by a stall) listens reconnect_timeout for a RESUME
// (pcRecv.uncommitted), its session closed. The stall watch of that send
// must end with it: before, it lived on through the listening and asked
// the closed transport for Stats every eighth of the stall limit until
// it took the silence for a stall (harmless, but calls into a plugin
// with no session, and a goroutine left running).
func TestVerifiedLostWatchStopped(t *testing.T) {
	s, dst, rcv, opt := pcSetup(t, vmtest.Options{})
	opt.StallTimeout, opt.SwitchoverTimeout, opt.ReconnectTimeout = time.Second, time.Second, 2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &statsWhileClosed{Transport: rcv}
	wait := receiveAsync(ctx, dst, tr, opt)
	never, stale := pcPages(s)
	failed := runScript(func() {
		s.toState(ctx, never, stale)
		s.recv(ctx, msgLoaded)
		s.send(ctx, msgHashes, hashesOf(s, 0, s.pages, ^uint64(0)))
		_, _ = s.tr.RecvMessage(ctx) // nothing: VERIFIED does not get out; the session ends
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	t.Logf("destination: %v", err)
	if rep.Handover != HandoverUnknown || !strings.Contains(fmt.Sprint(err), "no source reconnected within reconnect_timeout") ||
		dst.Counters().Resumes != 0 {
		t.Fatalf("destination %s: %v, %d resumes; want handover-unknown after listening for a RESUME, never run",
			rep.Handover, err, dst.Counters().Resumes)
	}
	if n := tr.calls.Load(); n != 0 {
		t.Errorf("%d Stats calls on the closed transport while the destination listened: VERIFIED's stall watch "+
			"outlived its send", n)
	}
}
