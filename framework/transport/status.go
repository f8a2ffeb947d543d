package transport

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// classes maps the error classes that cross the plugin boundary to gRPC
// status codes, both ways (framework/internal/errclass does the mapping).
// The first class an error matches wins.
var classes = errclass.Table{
	{Err: ErrNotSupported, Code: codes.Unimplemented},
	{Err: ErrBadConfig, Code: codes.InvalidArgument},
	{Err: ErrProtocol, Code: codes.DataLoss},
	{Err: ErrUnauthenticated, Code: codes.Unauthenticated},
	{Err: ErrClosed, Code: codes.Aborted},
	{Err: ErrPluginGone, Code: codes.Unavailable},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded},
	{Err: context.Canceled, Code: codes.Canceled},
}
