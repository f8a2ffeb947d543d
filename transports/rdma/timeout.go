package rdma

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// A setup step that ends because the setup's time is up fails with the
// mark of that end, not with a reason of its own: its context's error
// (a fabric wait, a dial), or the "i/o timeout" of the past deadline
// interruptOn set on its connection (a read, a TLS handshake). Wrapping
// the context's error onto that again said it twice ("fabric: context
// deadline exceeded: context deadline exceeded") and never said which
// bound it was. So each step that waits names itself (during), and the
// side whose time ran out says once what it was doing and which bound
// ended it (setupClock.timedOut, and setupReceive for a try it drops):
//
//	connect_timeout (10s) passed while waiting for the destination's OFFER: context deadline exceeded

// stepError names the setup step err came from, for the message of a
// step cut short; its own text is err's, unchanged.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// during names the step err came from ("waiting for the destination's
// KEYS"); nil stays nil.
func during(step string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{step, err}
}

// cutStep returns the step err came from (the outermost named), if
// err is only the mark of the setup's end; else "".
func cutStep(err error) string {
	var se *stepError
	if !errors.As(err, &se) {
		return ""
	}
	if errors.Is(se.err, context.DeadlineExceeded) || errors.Is(se.err, context.Canceled) || errors.Is(se.err, os.ErrDeadlineExceeded) {
		return se.step
	}
	return ""
}

// endedError is the error of a step cut short: its text says what ended
// it and what was under way, once; it matches reason alone (errors.Is),
// not the classes of the mark it replaces (the "i/o timeout" of an
// interrupted TLS handshake came wrapped as transport.ErrUnauthenticated).
type endedError struct {
	msg    string
	reason error
}

func (e *endedError) Error() string { return e.msg }
func (e *endedError) Unwrap() error { return e.reason }

// timedOut is the error of a source's try that failed with err once its
// clock had ended: if err is a named step cut short, "<why> while
// <step>: <the clock's error>", where why names the bound
// (connect_timeout and its value) or the Open's own context; otherwise
// err, with why and the clock's error added once.
func (c *setupClock) timedOut(err error) error {
	if dl, _ := c.Deadline(); c.Err() == nil && cutStep(err) != "" && !time.Now().Before(dl) {
		// A deadline taken from c (transport.Secure sets it on its
		// connection) passed an instant before c's own timer fired.
		<-c.Done()
	}
	reason := c.Err()
	if reason == nil {
		return err
	}
	if step := cutStep(err); step != "" {
		return &endedError{fmt.Sprintf("%s while %s: %v", c.why(), step, reason), reason}
	}
	if errors.Is(err, reason) {
		return fmt.Errorf("%w (%s)", err, c.why())
	}
	return fmt.Errorf("%w (%s meanwhile): %w", err, c.why(), reason)
}

// why says what ended the clock: its bound (connect_timeout), or the
// context it was started from.
func (c *setupClock) why() string {
	switch {
	case c.expired():
		return fmt.Sprintf("connect_timeout (%v) passed", c.bound)
	case errors.Is(c.Err(), context.DeadlineExceeded):
		return "the Open's deadline passed"
	default:
		return "the Open was canceled"
	}
}
