package transporttest

import (
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// requestKind is the urgent message kind the suite arms Answer with.
const requestKind = 11

// testAnswer: a sender that answers page requests itself
// (transport.Answerer) sends exactly the requested pages its owed set
// holds, once, zero pages as zero runs, and counts them; requests no
// longer reach RecvUrgent, other urgent messages still do; a malformed
// request ends the session. A transport without it says ErrNotSupported.
func testAnswer(t *testing.T, p *pair) {
	p.open()
	p.skipWithoutUrgent()
	a, ok := p.send.(transport.Answerer)
	if !ok {
		t.Skip("the sender does not implement transport.Answerer")
	}
	n := p.ram.Pages()
	owed, err := transport.NewOwed(n)
	if err != nil {
		t.Fatal(err)
	}
	defer owed.Close()
	if err := a.Answer(ctx(t), requestKind, owed); errors.Is(err, transport.ErrNotSupported) {
		t.Skipf("the transport does not answer requests itself: %v", err)
	} else if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	d, z := transport.KindData, transport.KindZero
	answered := []transport.PageRun{{First: 10, Count: 5, Kind: d}, {First: 40, Count: 1, Kind: z}, {First: 2040, Count: 16, Kind: d}}
	want := p.prepare(41, answered)
	for _, r := range answered {
		owed.Set(r.First, r.Count)
	}
	l := p.collectLanded()
	p.prime(l, 3)
	want[3] = p.ram.page(t, p.ram.Send, 3)
	// One request, over pages owed and not: 8..19, 40, 2030..2059.
	requested := []transport.PageRun{{First: 8, Count: 12}, {First: 40, Count: 1}, {First: 2030, Count: 30}}
	if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: requestKind, Payload: transport.AppendPageRequest(nil, requested)}); err != nil {
		t.Fatalf("SendUrgent(request): %v", err)
	}
	l.await(t, answered, opTimeout)
	p.ram.expect(t, want)
	if c := owed.Count(); c != 0 {
		t.Errorf("%d pages still owed after their request", c)
	}
	if c, w := owed.Counts(), (transport.OwedCounts{Answered: 22, AnsweredZero: 1, Again: 43 - 22}); c != w {
		t.Errorf("owed counts %+v, want %+v", c, w)
	}
	if r := owed.Resume(); r != 2060 {
		t.Errorf("resume point %d, want 2060 (after the last requested run)", r)
	}
	// The same request again: nothing is owed, nothing is sent twice.
	// Another kind still goes to RecvUrgent, after it.
	if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: requestKind, Payload: transport.AppendPageRequest(nil, requested)}); err != nil {
		t.Fatal(err)
	}
	if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: requestKind + 1, Payload: []byte("not a request")}); err != nil {
		t.Fatal(err)
	}
	m, err := p.send.RecvUrgent(ctx(t))
	if err != nil || m.Kind != requestKind+1 {
		t.Fatalf("RecvUrgent = kind %d, %v; want the message of kind %d (requests are answered, not returned)", m.Kind, err, requestKind+1)
	}
	p.prime(l, 4) // the urgent stream is ordered: whatever the request sent has landed
	for _, r := range answered {
		for q := r.First; q < r.First+r.Count; q++ {
			if c := l.count(q, r.Kind); c != 1 {
				t.Errorf("page %d landed %d times, want once", q, c)
			}
		}
	}
	if c := owed.Counts(); c.Answered != 22 || c.Again != 2*43-22 {
		t.Errorf("after the second request, owed counts %+v", c)
	}
	// A malformed request ends the session on the sender.
	if err := p.recv.SendUrgent(ctx(t), transport.Message{Kind: requestKind, Payload: []byte{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	bounded(t, "the sender's session to end after a malformed request", opTimeout, func() {
		for {
			if _, err := p.send.RecvUrgent(ctx(t)); err != nil {
				return
			}
		}
	})
}
