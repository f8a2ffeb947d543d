package hint

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// classes maps the error classes that cross the plugin boundary (both
// ways: provider errors to the host, Host errors to the plugin) to gRPC
// status codes (framework/internal/errclass does the mapping). The first
// class an error matches wins. Unimplemented is ErrNotSupported whoever
// said it: the peer's implementation, or a peer too old to know the
// method.
var classes = errclass.Table{
	{Err: ErrNotSupported, Code: codes.Unimplemented},
	{Err: ErrBadConfig, Code: codes.InvalidArgument},
	{Err: ErrPluginGone, Code: codes.Unavailable},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded},
	{Err: context.Canceled, Code: codes.Canceled},
}
