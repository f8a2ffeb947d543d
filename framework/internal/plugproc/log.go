package plugproc

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// readable is an hclog.Logger that writes time.Duration values as
// durations ("148ms"). hclog's JSON format writes a Duration as its
// int64 nanoseconds, which the host (go-plugin decodes the JSON into
// float64) would print as 1.48e+08.
type readable struct{ hclog.Logger }

// durations returns args with each time.Duration value as its String;
// args itself when there is none.
func durations(args []any) []any {
	var out []any
	for i := 1; i < len(args); i += 2 {
		d, ok := args[i].(time.Duration)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = d.String()
	}
	if out == nil {
		return args
	}
	return out
}

func (l readable) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, durations(args)...)
}
func (l readable) Trace(msg string, args ...any) { l.Logger.Trace(msg, durations(args)...) }
func (l readable) Debug(msg string, args ...any) { l.Logger.Debug(msg, durations(args)...) }
func (l readable) Info(msg string, args ...any)  { l.Logger.Info(msg, durations(args)...) }
func (l readable) Warn(msg string, args ...any)  { l.Logger.Warn(msg, durations(args)...) }
func (l readable) Error(msg string, args ...any) { l.Logger.Error(msg, durations(args)...) }

// With implements hclog.Logger.
func (l readable) With(args ...any) hclog.Logger { return readable{l.Logger.With(durations(args)...)} }

// Named implements hclog.Logger.
func (l readable) Named(name string) hclog.Logger { return readable{l.Logger.Named(name)} }

// ResetNamed implements hclog.Logger.
func (l readable) ResetNamed(name string) hclog.Logger { return readable{l.Logger.ResetNamed(name)} }
