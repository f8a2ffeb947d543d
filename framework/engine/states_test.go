package engine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

func TestStatusAndPhaseText(t *testing.T) {
	b, err := json.Marshal(Report{Status: StatusHandoverUnknown})
	if err != nil || !strings.Contains(string(b), `"status":"handover-unknown"`) {
		t.Fatalf("report JSON %s, %v", b, err)
	}
	b, err = json.Marshal(Progress{Phase: PhaseStop})
	if err != nil || !strings.Contains(string(b), `"phase":"stop-and-copy"`) {
		t.Fatalf("progress JSON %s, %v", b, err)
	}
	for _, s := range statuses {
		var got Status
		if err := got.UnmarshalText([]byte(s)); err != nil || got != s || !s.Valid() {
			t.Errorf("status %q: got %q, %v", s, got, err)
		}
	}
	for _, p := range phases {
		var got Phase
		if err := got.UnmarshalText([]byte(p)); err != nil || got != p || !p.Valid() {
			t.Errorf("phase %q: got %q, %v", p, got, err)
		}
	}
	var r Report
	if err := json.Unmarshal([]byte(`{"status":"finished"}`), &r); err == nil {
		t.Error("an unknown status was accepted")
	}
	var pr Progress
	if err := json.Unmarshal([]byte(`{"phase":""}`), &pr); err != nil || pr.Phase != "" {
		t.Errorf("empty phase: %q, %v", pr.Phase, err)
	}
	if err := json.Unmarshal([]byte(`{"phase":"warp"}`), &pr); err == nil {
		t.Error("an unknown phase was accepted")
	}
	if _, err := Status("finished").MarshalText(); err == nil {
		t.Error("an unknown status was marshalled")
	}
}

func TestPhaseTable(t *testing.T) {
	for _, c := range []struct {
		from, to Phase
		ok       bool
	}{
		{PhaseSetup, PhaseBulk, true},
		{PhaseBulk, PhaseDirty, true},
		{PhaseBulk, PhaseStop, true},
		{PhaseDirty, PhaseDirty, true},
		{PhaseDirty, PhaseStop, true},
		{PhaseStop, PhaseState, true},
		{PhaseWaiting, PhaseBulk, true},
		{PhaseBulk, PhaseState, true},
		{PhaseSetup, PhaseDone, true},
		{PhaseState, PhaseDone, true},
		{PhaseSetup, PhaseDirty, false},
		{PhaseDirty, PhaseBulk, false},
		{PhaseStop, PhaseDirty, false},
		{PhaseState, PhaseStop, false},
		{PhaseDone, PhaseBulk, false},
		{PhaseWaiting, PhaseState, false},
		{"", PhaseBulk, false},
	} {
		got, err := nextPhase(c.from, c.to)
		if (err == nil) != c.ok || (c.ok && got != c.to) || (!c.ok && got != c.from) {
			t.Errorf("%q → %q: %q, %v; want ok %v", c.from, c.to, got, err, c.ok)
		}
	}
}

// TestReceiverAccepts pins what the destination takes in each state.
func TestReceiverAccepts(t *testing.T) {
	want := map[Handover][]uint32{
		HandoverWaiting:   {msgHello, msgAbort},
		HandoverReceiving: {msgPostcopy, msgState, msgAbort},
		HandoverLoaded:    {msgHashes, msgCommit, msgAbort},
	}
	// Post-copy: POSTCOPY before STATE; RESUME only as the first message
	// of a re-opened connection (postcopy_recv.go), never in this table.
	for h := HandoverInvalid; h <= HandoverPostcopyBroken; h++ {
		for k := uint32(0); k <= msgMissing+1; k++ {
			if got := receiverTakes(h, k); got != oneOf(k, want[h]) {
				t.Errorf("%s takes %s: %v", h, msgName(k), got)
			}
		}
	}
	for k := uint32(1); k <= msgRunning; k++ {
		if strings.HasPrefix(msgName(k), "message") {
			t.Errorf("kind %d has no name", k)
		}
	}
}

// TestReceiverGivesUp: a destination that fails tells the source
// (ABORT) once; one that the source aborted, or whose handover is
// unknown, does not answer.
func TestReceiverGivesUp(t *testing.T) {
	dst := newFakeVM(t, [2]uint64{0, 64 << 10})
	hello := transportMessage(msgHello, encodeHello(dst.layout, 0, migrationTag{}))
	for _, c := range []struct {
		name  string
		msgs  []uint32 // after HELLO
		abort bool     // the destination sends ABORT
		final Handover
	}{
		{"source aborts", []uint32{msgAbort}, false, HandoverFailed},
		{"unexpected COMMIT", []uint32{msgCommit}, true, HandoverFailed},
		{"unexpected HELLO", []uint32{msgHello}, true, HandoverFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
			opt := Options{}
			opt.defaults()
			r := newReceiver(dst, end, opt)
			if _, err := r.handle(context.Background(), hello); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, k := range c.msgs {
				if _, err = r.handle(context.Background(), transportMessage(k, nil)); err != nil {
					break
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			r.giveUp(err)
			aborts := 0
			for _, k := range end.sent {
				if k == msgAbort {
					aborts++
				}
			}
			if (aborts == 1) != c.abort || aborts > 1 || r.ho.get() != c.final {
				t.Fatalf("sent %v, handover %s", end.sent, r.ho.get())
			}
		})
	}
	end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
	r := newReceiver(dst, end, Options{Log: nil})
	r.opt.defaults()
	r.ho.h = HandoverLoaded
	r.giveUp(r.unknown(errInjected))
	if len(end.sent) != 0 || r.ho.get() != HandoverUnknown {
		t.Fatalf("handover unknown: sent %v, handover %s", end.sent, r.ho.get())
	}
}

func transportMessage(kind uint32, payload []byte) transport.Message {
	return transport.Message{Kind: kind, Payload: payload}
}
