package sessionbase

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/ferryvm/ferry/framework/transport"
)

// AuthFailed says why a source's authentication on one of its
// connections (transport.Secure) failed, as far as the source can tell,
// for tcp's streams and rdma's control channel alike:
//
//   - its own deadline (ctx) passed first;
//   - the destination closed the connection without a TLS alert: it
//     dropped the connection, as it does when it stops waiting for one
//     (its Open over), when the handshake took longer than its bound
//     (tcp: 3 s, or connect_timeout if shorter; a loaded or emulated
//     host can be that slow), or to make room with too many connections
//     at once (rdma, before its gate: also while busy with an earlier
//     try of this source's), never because it refused the credentials;
//   - otherwise a refusal: the destination's alert (our certificate
//     refused) or its certificate refused here.
//
// It cannot tell a Ferry destination that dropped the connection from
// some other server at that address that closed it. The error class
// (transport.ErrUnauthenticated, where Secure gave it) is err's,
// unchanged.
func AuthFailed(ctx context.Context, err error) error {
	var op *net.OpError
	switch {
	case ctx.Err() != nil && !errors.Is(err, transport.ErrUnauthenticated):
		return fmt.Errorf("authenticating with the destination did not finish in time: %w", err)
	case errors.As(err, &op) && op.Op == "remote error": // the peer's TLS alert
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("the destination closed the connection during authentication without refusing this job's "+
			"credentials (it dropped it: no longer waiting for a source, the handshake slower than its bound, "+
			"or too many connections at once); try again: %w", err)
	}
	return fmt.Errorf("the destination refused this job's credentials, or is not this job's destination "+
		"(each side needs the credentials migrate made for this job): %w", err)
}
