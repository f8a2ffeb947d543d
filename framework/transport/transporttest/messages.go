package transporttest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

// messages returns n messages with payload sizes from empty to
// MaxMessage, tagged so they can be told apart.
func messages(tag byte, n int) []transport.Message {
	sizes := []int{0, 1, 100, 4096, 65537, transport.MaxMessage}
	var ms []transport.Message
	for i := range n {
		b := bytes.Repeat([]byte{tag, byte(i)}, sizes[i%len(sizes)]/2+1)[:sizes[i%len(sizes)]]
		ms = append(ms, transport.Message{Kind: uint32(i + 1), Payload: b})
	}
	return ms
}

// exchange sends n messages from each side while the other receives
// them, both ways at once, and checks order and contents.
func exchange(t *testing.T, p *pair, n int) {
	t.Helper()
	exchangeOn(t, p, n, false)
}

func testMessages(t *testing.T, p *pair) {
	p.open()
	exchange(t, p, 13)
}

func testMessageLimits(t *testing.T, p *pair) {
	p.open()
	for _, m := range []transport.Message{
		{Kind: 1, Payload: make([]byte, transport.MaxMessage+1)},
		{Kind: 0, Payload: []byte("kind 0 is invalid")},
	} {
		err := p.send.SendMessage(ctx(t), m)
		if err == nil || errors.Is(err, transport.ErrPluginGone) {
			t.Errorf("SendMessage(kind %d, %d bytes) = %v; want a rejection", m.Kind, len(m.Payload), err)
		}
	}
	// Nothing of the rejected messages arrives; the next one does.
	want := transport.Message{Kind: 7, Payload: []byte("after the rejects")}
	if err := p.send.SendMessage(ctx(t), want); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	got, err := p.recv.RecvMessage(ctx(t))
	if err != nil || got.Kind != want.Kind || !bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("RecvMessage = kind %d %q, %v; want kind 7 %q", got.Kind, got.Payload, err, want.Payload)
	}
}

// testPayloadsOwned: a message's payload is the caller's again once
// SendMessage (or SendUrgent) returns, and a received one is the
// receiver's to keep. The engine reuses its buffers (the page check's
// HASHES are built in one): a transport that queued the sender's slice,
// or handed two receives the same buffer, would deliver later bytes in
// place of earlier ones. All messages are sent before any is received,
// and each received one is checked only after the last arrived.
func testPayloadsOwned(t *testing.T, p *pair) {
	p.open()
	const n = 8
	for _, urgent := range []bool{false, true} {
		send, recv := p.send.SendMessage, p.recv.RecvMessage
		if urgent {
			send, recv = p.send.SendUrgent, p.recv.RecvUrgent
		}
		buf := make([]byte, 4096)
		for i := range n {
			for j := range buf {
				buf[j] = byte(i)
			}
			if err := send(ctx(t), transport.Message{Kind: uint32(i + 1), Payload: buf}); err != nil {
				t.Fatalf("urgent %v: send %d: %v", urgent, i, err)
			}
		}
		got := make([]transport.Message, n)
		for i := range got {
			m, err := recv(ctx(t))
			if err != nil {
				t.Fatalf("urgent %v: receive %d: %v", urgent, i, err)
			}
			got[i] = m
		}
		for i, m := range got {
			if m.Kind != uint32(i+1) || !bytes.Equal(m.Payload, bytes.Repeat([]byte{byte(i)}, len(buf))) {
				t.Errorf("urgent %v: message %d arrived as kind %d with %x...; want kind %d, %d bytes of %#x "+
					"(a payload held past SendMessage, or a receive buffer reused)", urgent, i, m.Kind, m.Payload[:min(8, len(m.Payload))], i+1, len(buf), i)
			}
		}
	}
}
