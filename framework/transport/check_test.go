package transport_test

import (
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
)

func TestMessageCheck(t *testing.T) {
	for _, c := range []struct {
		m  transport.Message
		ok bool
	}{
		{transport.Message{Kind: 1}, true},
		{transport.Message{Kind: 7, Payload: make([]byte, transport.MaxMessage)}, true},
		{transport.Message{Kind: 0}, false},
		{transport.Message{Kind: 1, Payload: make([]byte, transport.MaxMessage+1)}, false},
	} {
		if err := c.m.Check(); (err == nil) != c.ok {
			t.Errorf("kind %d, %d bytes: Check = %v", c.m.Kind, len(c.m.Payload), err)
		}
	}
}
