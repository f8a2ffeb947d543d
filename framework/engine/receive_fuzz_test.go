package engine

import (
	"context"
	"encoding/binary"
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
// and LOADED goes out only once, after a complete state.
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
	f.Fuzz(func(t *testing.T, b []byte) {
		dst.mu.Lock()
		dst.resumed, dst.paused = 0, true
		dst.mu.Unlock()
		end := &sinkEnd{pipeEnd: &pipeEnd{p: &pipe{}}}
		opt := Options{}
		opt.defaults()
		r := newReceiver(dst, end, opt)
		var wasLoaded bool
		for _, m := range fuzzMessages(b) {
			before := r.ho.get()
			done, err := r.handle(context.Background(), m)
			after := r.ho.get()
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
