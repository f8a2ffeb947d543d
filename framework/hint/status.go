package hint

import "github.com/ferryvm/ferry/framework/internal/errclass"

// classes maps the error classes that cross the plugin boundary (both
// ways: provider errors to the host, Host errors to the plugin) to gRPC
// status codes (framework/internal/errclass does the mapping): the
// classes every kind has, and no others. Unimplemented is ErrNotSupported
// whoever said it: the peer's implementation, or a peer too old to know
// the method.
var classes = errclass.NewTable(ErrNotSupported, ErrBadConfig, ErrPluginGone)
