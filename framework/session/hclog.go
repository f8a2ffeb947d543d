package session

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"math"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
)

// slogLogger is an hclog.Logger that forwards each record to slog once:
// its level, message and key/values, with the plugin's name as the
// attribute "plugin". go-plugin hands it the lines a plugin logs (the
// plugin writes JSON; go-plugin decodes it and calls Log), so the user
// sees one slog record per plugin message, not a formatted hclog line
// wrapped in a slog line.
type slogLogger struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any // With's
}

var _ hclog.Logger = (*slogLogger)(nil)

// hclogFor returns the hclog.Logger for the plugin binary at path. Its
// level is the lowest that l's handler enables (so the plugin is told
// not to bother with the rest).
func hclogFor(l *slog.Logger, path string) hclog.Logger {
	plugin := filepath.Base(path)
	return &slogLogger{l: l.With("plugin", plugin), name: plugin, level: levelOf(l)}
}

// HCLog returns an hclog.Logger that forwards to l as a plugin's logs
// are forwarded, named name: for a transport built in process
// (Spec.TransportInProcess; transports/tcp.New takes one).
func HCLog(l *slog.Logger, name string) hclog.Logger { return hclogFor(l, name) }

// levels maps hclog's levels to slog's, most verbose first.
var levels = []struct {
	h hclog.Level
	s slog.Level
}{
	{hclog.Trace, slog.LevelDebug - 4},
	{hclog.Debug, slog.LevelDebug},
	{hclog.Info, slog.LevelInfo},
	{hclog.Warn, slog.LevelWarn},
	{hclog.Error, slog.LevelError},
}

func levelOf(l *slog.Logger) hclog.Level {
	for _, lv := range levels {
		if l.Enabled(context.Background(), lv.s) {
			return lv.h
		}
	}
	return hclog.Off
}

func slogLevel(h hclog.Level) slog.Level {
	for _, lv := range levels {
		if lv.h == h {
			return lv.s
		}
	}
	return slog.LevelInfo // NoLevel, Off: unexpected here
}

// Log implements hclog.Logger. It drops go-plugin's "timestamp" pair
// (slog stamps the record itself) and renames a "plugin" key (go-plugin
// puts the binary's path there) to "path", so the record's plugin
// attribute stays the one name.
func (s *slogLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || (level != hclog.NoLevel && level < s.level) {
		return
	}
	kv := append([]any(nil), s.args...)
	for i := 0; i < len(args); i += 2 {
		pair := args[i:min(i+2, len(args))]
		switch k, _ := pair[0].(string); {
		case len(pair) < 2:
		case k == "timestamp":
			continue
		case k == "plugin":
			pair = []any{"path", pair[1]}
		default:
			pair = []any{pair[0], whole(pair[1])}
		}
		kv = append(kv, pair...)
	}
	s.l.Log(context.Background(), slogLevel(level), msg, kv...)
}

// whole returns a float64 that holds a whole number as an int64: go-plugin
// decodes the plugin's JSON numbers into float64, and slog would print
// a count of 1048576 pages as 1.048576e+06.
func whole(v any) any {
	if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return v
}

func (s *slogLogger) Trace(msg string, args ...any) { s.Log(hclog.Trace, msg, args...) }
func (s *slogLogger) Debug(msg string, args ...any) { s.Log(hclog.Debug, msg, args...) }
func (s *slogLogger) Info(msg string, args ...any)  { s.Log(hclog.Info, msg, args...) }
func (s *slogLogger) Warn(msg string, args ...any)  { s.Log(hclog.Warn, msg, args...) }
func (s *slogLogger) Error(msg string, args ...any) { s.Log(hclog.Error, msg, args...) }

func (s *slogLogger) IsTrace() bool { return s.level <= hclog.Trace }
func (s *slogLogger) IsDebug() bool { return s.level <= hclog.Debug }
func (s *slogLogger) IsInfo() bool  { return s.level <= hclog.Info }
func (s *slogLogger) IsWarn() bool  { return s.level <= hclog.Warn }
func (s *slogLogger) IsError() bool { return s.level <= hclog.Error }

// ImpliedArgs implements hclog.Logger.
func (s *slogLogger) ImpliedArgs() []any { return s.args }

// With implements hclog.Logger.
func (s *slogLogger) With(args ...any) hclog.Logger {
	c := *s
	c.args = append(append([]any(nil), s.args...), args...)
	return &c
}

// Name implements hclog.Logger.
func (s *slogLogger) Name() string { return s.name }

// Named implements hclog.Logger. The name is kept for Name only: every
// record already carries the plugin's name (go-plugin names its logger
// after the binary, which is that name again).
func (s *slogLogger) Named(name string) hclog.Logger {
	c := *s
	if c.name != name {
		c.name = c.name + "." + name
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (s *slogLogger) ResetNamed(name string) hclog.Logger {
	c := *s
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger; it only narrows what slog receives.
func (s *slogLogger) SetLevel(level hclog.Level) { s.level = level }

// GetLevel implements hclog.Logger.
func (s *slogLogger) GetLevel() hclog.Level { return s.level }

// StandardLogger implements hclog.Logger: each line at Info.
func (s *slogLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: each write is one record at
// Info (opts are ignored).
func (s *slogLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{s} }

type lineWriter struct{ s *slogLogger }

func (w lineWriter) Write(p []byte) (int, error) {
	w.s.Info(string(bytes.TrimRight(p, "\r\n")))
	return len(p), nil
}
