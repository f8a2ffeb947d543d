package sessionbase

import (
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// MsgHeader checks m (transport.Message.Check) and returns the header
// of the MSG frame that carries it; the caller writes m.Payload right
// after it. Its errors start with what ("send message").
func MsgHeader(what string, m transport.Message) ([]byte, error) {
	if err := m.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	hdr, err := wire.AppendMsgHeader(make([]byte, 0, wire.HeaderSize+4), m.Kind, len(m.Payload))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return hdr, nil
}

// AbortCode is the ABORT code that tells the peer of err, a session's
// failure found here: wire.CodeProtocol when err wraps
// transport.ErrProtocol (the peer broke the format or its bounds),
// wire.CodeFailed for anything else (this side failed: I/O, its host, a
// sink that refused for its own reasons), so the peer does not report
// a protocol violation of its own that never happened. What it does not
// decide: whether there is a peer left to tell (a closed connection);
// that is the caller's.
func AbortCode(err error) wire.Code {
	if errors.Is(err, transport.ErrProtocol) {
		return wire.CodeProtocol
	}
	return wire.CodeFailed
}
