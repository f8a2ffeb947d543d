package transport

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classes maps the error classes that cross the plugin boundary to gRPC
// status codes, both ways. The first class an error matches wins.
var classes = []struct {
	class error
	code  codes.Code
}{
	{ErrNotSupported, codes.Unimplemented},
	{ErrBadConfig, codes.InvalidArgument},
	{ErrProtocol, codes.DataLoss},
	{ErrUnauthenticated, codes.Unauthenticated},
	{ErrClosed, codes.Aborted},
	{ErrPluginGone, codes.Unavailable},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toStatus turns an implementation's error into a gRPC status error whose
// code is the error's class (codes.Unknown for none) and whose message is
// the error's text, unchanged.
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

// classError is an error that came back over gRPC: the plugin's message
// text, and its class for errors.Is.
type classError struct {
	class error // nil: no class
	msg   string
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

// fromStatus turns a gRPC status back into an error of its class with the
// plugin's message. Codes with no class (Unknown, Internal, ...) keep only
// the message.
func fromStatus(st *status.Status) error {
	for _, c := range classes {
		if st.Code() == c.code {
			return &classError{class: c.class, msg: st.Message()}
		}
	}
	return &classError{msg: st.Message()}
}
