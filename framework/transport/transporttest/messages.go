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
