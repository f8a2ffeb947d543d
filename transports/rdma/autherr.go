package rdma

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/ferryvm/ferry/framework/transport"
)

// authErr says why the source's authentication on a control channel
// (transport.Secure) failed, as far as the source can tell:
//
//   - its own deadline passed first;
//   - the destination closed the connection without a TLS alert: it
//     dropped the connection, as it does when it stops waiting for one
//     (its Open over, too many connections at once; before the gate,
//     gate.go, also while busy with an earlier try of this source's),
//     never because it refused the credentials;
//   - otherwise a refusal: the destination's alert (our certificate
//     refused) or its certificate refused here.
//
// It cannot tell a Ferry destination that dropped the connection from
// some other server at that address that closed it. The error class
// (transport.ErrUnauthenticated) is Secure's, unchanged.
func authErr(ctx context.Context, err error) error {
	var op *net.OpError
	switch {
	case ctx.Err() != nil && !errors.Is(err, transport.ErrUnauthenticated):
		return fmt.Errorf("authenticating with the destination did not finish in time: %w", err)
	case errors.As(err, &op) && op.Op == "remote error": // the peer's TLS alert
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("the destination closed the connection during authentication without refusing this job's "+
			"credentials (it dropped it: no longer waiting for a source, or too many connections at once); try again: %w", err)
	}
	return fmt.Errorf("the destination refused this job's credentials, or is not this job's destination "+
		"(each side needs the credentials migrate made for this job): %w", err)
}
