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

// TestCheckBreakPrecopy: the stream breaks during the page check, after
// LOADED. The source never commits without VERIFIED: it resumes its VM
// (failed). The pre-copy destination holds the whole guest and cannot
// tell a source that resumed from one whose VMM died: it stays
// handover-unknown, never resumed, so that beside a dead source its
// copy is not lost (docs/model, property (b), mutant 8); migrate's
// resolve discards it beside a running source. So it does when the
// break comes right after its VERIFIED went out.
func TestCheckBreakPrecopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*pipe)
	}{
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
