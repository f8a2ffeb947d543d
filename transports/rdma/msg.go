package rdma

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// recvMessage implements RecvMessage: messages that arrived before the
// session ended are still delivered, then the session's error.
func (s *session) recvMessage(ctx context.Context) (transport.Message, error) {
	return s.msgs.Recv(ctx, s.done, s.error)
}

// sendMessage implements SendMessage over the control channel (inside
// TLS unless the credentials are plaintext).
func (s *session) sendMessage(ctx context.Context, m transport.Message) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	hdr, err := wire.AppendMsgHeader(nil, m.Kind, len(m.Payload))
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	return s.writeFrame(ctx, hdr, m.Payload)
}
