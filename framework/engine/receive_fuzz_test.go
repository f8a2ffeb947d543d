package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// sinkEnd is a receiving transport end whose SendMessage records kinds.
type sinkEnd struct {
	*pipeEnd
	sent []uint32
}

func (s *sinkEnd) SendMessage(_ context.Context, m transport.Message) error {
	s.sent = append(s.sent, m.Kind)
	return nil
}

// fuzzMessages splits b into messages: kind (1 byte), payload length
// (2 bytes LE, cut to what is left), payload.
func fuzzMessages(b []byte) []transport.Message {
	var out []transport.Message
	for len(b) >= 3 {
		k, n := uint32(b[0]), int(binary.LittleEndian.Uint16(b[1:]))
		b = b[3:]
		n = min(n, len(b))
		out = append(out, transport.Message{Kind: k, Payload: b[:n]})
		b = b[n:]
	}
	return out
}

// fuzzRecord encodes messages the way fuzzMessages reads them.
func fuzzRecord(ms ...transport.Message) []byte {
	var b []byte
	for _, m := range ms {
		b = append(b, byte(m.Kind))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(m.Payload)))
		b = append(b, m.Payload...)
	}
	return b
}

// FuzzReceive feeds sequences of messages into the destination's state
// machine. Whatever arrives: no panic, no transition outside the table,
// the VM resumes only on a COMMIT after LOADED and then says RUNNING,
// and LOADED goes out only once, after a complete state. And the VM
// never runs a copy that the page check found wrong or had not
// finished: after a HASHES taken, or a HELLO that promised the check,
// it resumes only once every page's hash was in and each matched the
// destination's RAM (all zeros here: fuzzCheck keeps its own count,
// not the engine's).
//
// What it does not check: the receive loop around handle (its timeouts,
// giveUp's ABORT), post-copy (FuzzPostcopyReceive), and what LoadState
// was given.
func FuzzReceive(f *testing.F) {
	dst := newFakeVM(f, [2]uint64{0, 64 << 10})
	hello := transport.Message{Kind: msgHello, Payload: encodeHello(dst.layout, 0, migrationTag{})}
	state := transport.Message{Kind: msgState, Payload: encodeStateChunk(3, 0, []byte("abc"))}
	commit := transport.Message{Kind: msgCommit}
	f.Add(fuzzRecord(hello, state, commit))
	f.Add(fuzzRecord(hello, state, transport.Message{Kind: msgAbort, Payload: []byte("no")}, commit))
	f.Add(fuzzRecord(commit, hello, state))
	f.Add(fuzzRecord(hello, hello))
	f.Add(fuzzRecord(hello, transport.Message{Kind: msgState, Payload: encodeStateChunk(6, 0, []byte("abc"))},
		transport.Message{Kind: msgState, Payload: encodeStateChunk(6, 3, []byte("def"))}, commit, commit))
	// The page check, promised in HELLO: clean (COMMIT runs the VM), one
	// page differing, and COMMIT before any HASHES (refused both).
	checked := transport.Message{Kind: msgHello, Payload: encodeHello(dst.layout, helloCheck, migrationTag{})}
	hashes := func(bad uint64) transport.Message {
		b := binary.LittleEndian.AppendUint64(nil, 0)
		b = binary.LittleEndian.AppendUint64(b, dst.layout.Pages())
		for p := range dst.layout.Pages() {
			h := zeroPageHash
			if p == bad {
				h = 7
			}
			b = binary.LittleEndian.AppendUint64(b, h)
		}
		return transport.Message{Kind: msgHashes, Payload: b}
	}
	f.Add(fuzzRecord(checked, state, hashes(^uint64(0)), commit))
	f.Add(fuzzRecord(checked, state, hashes(3), commit))
	f.Add(fuzzRecord(checked, state, commit))
	f.Fuzz(func(t *testing.T, b []byte) {
		dst.mu.Lock()
		dst.resumed, dst.paused = 0, true
		dst.mu.Unlock()
		end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
		opt := Options{}
		opt.defaults()
		r := newReceiver(dst, end, opt)
		var wasLoaded bool
		check := fuzzCheck{pages: dst.layout.Pages()}
		for _, m := range fuzzMessages(b) {
			before := r.ho.get()
			done, err := r.handle(context.Background(), m)
			after := r.ho.get()
			if err == nil {
				check.took(m)
			}
			if dst.resumed > 0 && !check.allowsRun() {
				t.Fatalf("VM resumed on message %d with the page check %s", m.Kind, &check)
			}
			if err != nil && strings.Contains(err.Error(), "engine bug") {
				t.Fatalf("%s + message %d: %v", before, m.Kind, err)
			}
			if after != before && !canMove(before, after) {
				t.Fatalf("%s → %s on message %d", before, after, m.Kind)
			}
			wasLoaded = wasLoaded || after == HandoverLoaded
			if dst.resumed > 0 && (m.Kind != msgCommit || before != HandoverLoaded || after != HandoverRunning) {
				t.Fatalf("VM resumed on message %d in %s (now %s)", m.Kind, before, after)
			}
			if done || err != nil {
				break
			}
		}
		loaded, running := 0, 0
		for _, k := range end.sent {
			switch k {
			case msgLoaded:
				loaded++
			case msgRunning:
				running++
			}
		}
		if loaded > 1 || (loaded == 1) != wasLoaded || running != dst.resumed || (running == 1) != (r.ho.get() == HandoverRunning) {
			t.Fatalf("sent %v, handover %s, resumed %d", end.sent, r.ho.get(), dst.resumed)
		}
	})
}

// fuzzCheck follows the page check as the messages FuzzReceive's
// destination took have it, over RAM of all zeros: whether HELLO
// promised it, how many pages' hashes came (in order, as the engine
// takes them), how many named other contents than a zero page.
type fuzzCheck struct {
	pages, next, differ uint64
	promised, started   bool
}

// took records message m, which the destination took without error.
func (c *fuzzCheck) took(m transport.Message) {
	switch m.Kind {
	case msgHello:
		if h, err := decodeHello(m.Payload); err == nil {
			c.promised = h.Flags&helloCheck != 0
		}
	case msgHashes:
		c.started = true
		if len(m.Payload) < 16 {
			return
		}
		n := binary.LittleEndian.Uint64(m.Payload[8:])
		for i := uint64(0); i < n && 16+8*i+8 <= uint64(len(m.Payload)); i++ {
			if h := binary.LittleEndian.Uint64(m.Payload[16+8*i:]); h != hashFree && h != zeroPageHash {
				c.differ++
			}
		}
		c.next += n
	}
}

// allowsRun reports whether the VM may run: no check under way or
// promised, or one complete that found nothing different.
func (c *fuzzCheck) allowsRun() bool {
	if !c.started && !c.promised {
		return true
	}
	return c.next >= c.pages && c.differ == 0
}

func (c *fuzzCheck) String() string {
	return fmt.Sprintf("promised %v, %d of %d pages' hashes in, %d differing", c.promised, c.next, c.pages, c.differ)
}
