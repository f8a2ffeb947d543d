package sessionbase

import (
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
