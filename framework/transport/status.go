package transport

import (
	"google.golang.org/grpc/codes"

	"github.com/ferryvm/ferry/framework/internal/errclass"
)

// classes maps the error classes that cross the plugin boundary to gRPC
// status codes, both ways (framework/internal/errclass does the mapping):
// the classes every kind has, and a transport's protocol violation,
// failed authentication, a session refused for another migration and
// a peer-closed session. The first class an error matches wins.
var classes = errclass.NewTable(ErrNotSupported, ErrBadConfig, ErrPluginGone,
	errclass.Class{Err: ErrProtocol, Code: codes.DataLoss},
	errclass.Class{Err: ErrUnauthenticated, Code: codes.Unauthenticated},
	errclass.Class{Err: ErrWrongMigration, Code: codes.PermissionDenied},
	errclass.Class{Err: ErrClosed, Code: codes.Aborted})
