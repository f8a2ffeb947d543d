package errclass

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrProtocol is the class of a peer or stream that broke the protocol: a
// malformed frame, a message out of order. It is transport.ErrProtocol,
// and every decoding error of framework/wire wraps it; it lives here so
// that the wire format need not import the transport kind.
var ErrProtocol = errors.New("transport protocol violation")

// Class pairs an error class (a sentinel, or a context error) with the
// gRPC code it crosses the boundary as.
type Class struct {
	Err  error
	Code codes.Code
}

// NewTable returns a kind's classes: not supported (Unimplemented), bad
// configuration (InvalidArgument), the kind's own classes, plugin gone
// (Unavailable), then the context's DeadlineExceeded and Canceled.
func NewTable(notSupported, badConfig, gone error, own ...Class) Table {
	t := Table{{notSupported, codes.Unimplemented}, {badConfig, codes.InvalidArgument}}
	t = append(t, own...)
	return append(t, Class{gone, codes.Unavailable},
		Class{context.DeadlineExceeded, codes.DeadlineExceeded}, Class{context.Canceled, codes.Canceled})
}

// Table is a kind's error classes. An error takes the code of the first
// class it matches (errors.Is); a code maps back to the first class with
// that code.
type Table []Class

// ToStatus turns an error into a gRPC status error whose code is the
// error's class (codes.Unknown for none) and whose message is the error's
// text, unchanged. nil stays nil.
func (t Table) ToStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range t {
		if errors.Is(err, c.Err) {
			return status.Error(c.Code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromStatus turns a gRPC status back into an error of its class with the
// peer's message. Codes with no class (Unknown, Internal, ...) keep only
// the message. Unimplemented is the not-supported class whoever said it:
// the peer's implementation, or a peer too old to know the method.
func (t Table) FromStatus(st *status.Status) error {
	for _, c := range t {
		if st.Code() == c.Code {
			return New(c.Err, st.Message())
		}
	}
	return New(nil, st.Message())
}

// FromRPC turns an error an RPC returned into an error of its class: the
// caller's own deadline or cancellation keeps its context class, a status
// maps through FromStatus, and anything else (not a status) is returned
// as it is. nil stays nil.
func (t Table) FromRPC(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if ownEnd(ctx, st) {
		return New(ctx.Err(), st.Message())
	}
	return t.FromStatus(st)
}

// ownEnd reports whether st is the end of the caller's own context.
//
// A plugin's DeadlineExceeded for the caller's own deadline can come
// back before ctx says it ended: gRPC hands the deadline to the plugin,
// whose copy may fire first, and ctx's timer ends ctx on a goroutine of
// its own, which a loaded host may run late. A caller that then asks
// ctx.Err() (the engine's "silent session", its switch-over deadline)
// would take its own deadline for the plugin's failure. So once ctx's
// deadline has passed on the clock, ownEnd waits for ctx to end, as it
// is about to, for at most ownEndWait. What it cannot tell: a plugin
// that gave up on a deadline of its own shorter than the caller's is
// not the caller's end (the class stays DeadlineExceeded, through
// FromStatus).
func ownEnd(ctx context.Context, st *status.Status) bool {
	if st.Code() != codes.Canceled && st.Code() != codes.DeadlineExceeded {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	if !ok || st.Code() != codes.DeadlineExceeded || time.Now().Before(d) {
		return false
	}
	t := time.NewTimer(ownEndWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false // a context that does not end at its deadline
	}
}

// ownEndWait bounds ownEnd's wait for a context whose deadline has
// passed to say it ended: its timer's goroutine is due at once.
const ownEndWait = time.Second

// Error is an error that came back over gRPC (or stands for one): the
// peer's text, and its class for errors.Is.
type Error struct {
	class error // nil: no class
	msg   string
}

// New returns an error of class (nil: none) whose text is msg.
func New(class error, msg string) *Error { return &Error{class: class, msg: msg} }

func (e *Error) Error() string { return e.msg }

// Unwrap returns the class.
func (e *Error) Unwrap() error { return e.class }
