package transport_test

import (
	"errors"
	"testing"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// TestWireAgrees: the wire format (which imports nothing from this
// package) carries the messages and tags this package promises and reports its
// decoding errors as this package's protocol class.
func TestWireAgrees(t *testing.T) {
	if wire.MaxMessage != transport.MaxMessage {
		t.Errorf("wire.MaxMessage %d, transport.MaxMessage %d", wire.MaxMessage, transport.MaxMessage)
	}
	if wire.TagSize != transport.TagSize {
		t.Errorf("wire.TagSize %d, transport.TagSize %d", wire.TagSize, transport.TagSize)
	}
	for _, err := range []error{wire.ErrBadMagic, wire.ErrBadVersion, wire.ErrBadType, wire.ErrTooLong, wire.ErrTruncated, wire.ErrMalformed} {
		if !errors.Is(err, transport.ErrProtocol) {
			t.Errorf("%v is not transport.ErrProtocol", err)
		}
	}
	if wire.ErrProtocol != transport.ErrProtocol {
		t.Error("wire.ErrProtocol is not transport.ErrProtocol")
	}
}
