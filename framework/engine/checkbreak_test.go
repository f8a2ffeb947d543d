package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
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
