package hint

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExitError is the error of a call to a provider whose process ended on
// its own (a crash, an exit; not Kill): errors.Is(err, ErrPluginGone)
// holds, and it says how the process ended, so reports can show it
// (engine.HintStats: status "crashed", exit_status, last_error).
type ExitError struct {
	// Status is how the process ended: "exit status 3", "signal:
	// killed"; "" if it had not been reaped within a second.
	Status string
	// LastError is the last line the plugin logged at level ERROR, or
	// the first line of its panic; "" if none.
	LastError string
	// Err is the failed call's error (wraps ErrPluginGone).
	Err error
}

func (e *ExitError) Error() string {
	var why []string
	if e.Status != "" {
		why = append(why, e.Status)
	}
	if e.LastError != "" {
		why = append(why, fmt.Sprintf("last error: %q", e.LastError))
	}
	if len(why) == 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (%s)", e.Err, strings.Join(why, "; "))
}

// Unwrap returns Err.
func (e *ExitError) Unwrap() error { return e.Err }

// exitWait bounds how long a failed call waits for the process to be
// reaped, for its exit status.
const exitWait = time.Second

// exitErr turns an ErrPluginGone from a process that ended on its own
// into an *ExitError; other errors, and a process this host killed, pass
// unchanged.
func (p *Plugin) exitErr(err error) error {
	if err == nil || !errors.Is(err, ErrPluginGone) || p.killed.Load() {
		return err
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	select {
	case <-p.Done():
	case <-time.After(exitWait):
	}
	x := p.proc.Exit()
	return &ExitError{Status: x.Status, LastError: x.LastError, Err: err}
}
