package rdma

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
)

// The urgent path of transport API 3 is not implemented yet: every call
// returns ErrNotSupported, which the contract allows (post-copy then
// needs another transport). What it takes here: bulk pages land through
// RDMA writes the destination never sees, so transport.Lane cannot drop
// a bulk copy that an urgent one overtook. Urgent pages would go as
// writes on the same endpoint (FI_ORDER_WAW keeps them behind earlier
// bulk writes of the same page, which bounds their wait by the writes in
// flight), each followed by a notice for Landed, and bulk runs would be
// announced on the control channel so COMMIT can report them to Landed.
var errNoUrgent = fmt.Errorf("rdma transport: the urgent path (post-copy) is not implemented yet: %w", transport.ErrNotSupported)

// SendUrgent implements transport.Transport: not supported yet.
func (t *Transport) SendUrgent(context.Context, transport.Message) error { return errNoUrgent }

// RecvUrgent implements transport.Transport: not supported yet.
func (t *Transport) RecvUrgent(context.Context) (transport.Message, error) {
	return transport.Message{}, errNoUrgent
}

// SendPagesUrgent implements transport.Transport: not supported yet.
func (t *Transport) SendPagesUrgent(context.Context, []transport.PageRun) error { return errNoUrgent }

// Landed implements transport.Transport: not supported yet.
func (t *Transport) Landed(context.Context) ([]transport.PageRun, error) { return nil, errNoUrgent }
