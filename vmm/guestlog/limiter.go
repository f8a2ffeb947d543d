package guestlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often a Limiter logs a message at most.
const DefaultInterval = 5 * time.Second

// Limiter rate-limits guest-triggered log records per message. It is safe
// for concurrent use. The zero value is not usable: call New.
type Limiter struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*kind // by message: messages are constants in code
}

// kind is one message's window.
type kind struct {
	level    slog.Level
	last     time.Time // when it was last logged
	repeated uint64    // occurrences counted since then
	args     []any     // the last counted occurrence's attributes
	timer    *time.Timer
}

// New returns a Limiter over log (nil: discard) that logs each message at
// most once every interval (0: DefaultInterval).
func New(log *slog.Logger, every time.Duration) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultInterval
	}
	return &Limiter{log: log, every: every, kinds: map[string]*kind{}}
}

// Info logs msg at Info, rate-limited.
func (l *Limiter) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, args...) }

// Warn logs msg at Warn, rate-limited.
func (l *Limiter) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, args...) }

// Error logs msg at Error, rate-limited.
func (l *Limiter) Error(msg string, args ...any) { l.Log(slog.LevelError, msg, args...) }

// Log logs msg with args now if msg was not logged in the last interval,
// adding repeated=N when N occurrences were counted since; otherwise it
// counts this one and makes sure a summary follows when the interval ends.
func (l *Limiter) Log(level slog.Level, msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	k := l.kinds[msg]
	if k == nil {
		k = &kind{}
		l.kinds[msg] = k
	}
	k.level = level
	if k.last.IsZero() || now.Sub(k.last) >= l.every {
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
		l.emit(msg, k, now, args)
		return
	}
	k.repeated++
	k.args = args
	if k.timer == nil {
		k.timer = time.AfterFunc(k.last.Add(l.every).Sub(now), func() { l.flush(msg) })
	}
}

// flush logs the summary of msg's window, if it still has one.
func (l *Limiter) flush(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[msg]
	k.timer = nil
	if k.repeated > 0 {
		l.emit(msg, k, time.Now(), k.args)
	}
}

// emit logs one record for k (l.mu held) and starts a new window.
func (l *Limiter) emit(msg string, k *kind, now time.Time, args []any) {
	if k.repeated > 0 {
		args = append(args[:len(args):len(args)], "repeated", k.repeated, "since", now.Sub(k.last).Round(time.Millisecond))
	}
	l.log.Log(context.Background(), k.level, msg, args...)
	k.last, k.repeated, k.args = now, 0, nil
}

// Stop cancels pending summaries (what was counted is not logged). Logging
// after Stop works as before.
func (l *Limiter) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.kinds {
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
	}
}
