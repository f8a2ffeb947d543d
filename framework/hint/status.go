package hint

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classes maps the error classes that cross the plugin boundary (both
// ways: provider errors to the host, Host errors to the plugin) to gRPC
// status codes. The first class an error matches wins.
var classes = []struct {
	class error
	code  codes.Code
}{
	{ErrNotSupported, codes.Unimplemented},
	{ErrBadConfig, codes.InvalidArgument},
	{ErrPluginGone, codes.Unavailable},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toStatus turns an error into a gRPC status error whose code is the
// error's class (codes.Unknown for none) and whose message is the error's
// text, unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c.class) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// classError is an error that came back over gRPC: the peer's message
// text, and its class for errors.Is.
type classError struct {
	class error // nil: no class
	msg   string
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

// fromStatus turns a gRPC status back into an error of its class with the
// peer's message. Codes with no class (Unknown, Internal, ...) keep only
// the message. Unimplemented is ErrNotSupported whoever said it: the
// peer's implementation, or a peer too old to know the method.
func fromStatus(st *status.Status) error {
	for _, c := range classes {
		if st.Code() == c.code {
			return &classError{class: c.class, msg: st.Message()}
		}
	}
	return &classError{msg: st.Message()}
}
