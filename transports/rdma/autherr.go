package rdma

import (
	"context"

	"github.com/ferryvm/ferry/transports/internal/sessionbase"
)

// authErr says why the source's authentication on a control channel
// failed (sessionbase.AuthFailed, which tcp's streams share).
func authErr(ctx context.Context, err error) error { return sessionbase.AuthFailed(ctx, err) }
