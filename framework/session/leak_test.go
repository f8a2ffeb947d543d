package session_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// leaks records this process's open files, child processes and
// goroutines; check fails the test if a session left any behind.
type leaks struct {
	fds, goroutines int
}

func startLeakCheck(t *testing.T) *leaks {
	t.Helper()
	if kids := children(t); len(kids) != 0 {
		t.Fatalf("child processes before the test: %v", kids)
	}
	return &leaks{fds: openFiles(t), goroutines: runtime.NumGoroutine()}
}

// check waits a little for goroutines that are already on their way
// out (the runtime's, the test's own), not for the session: Send and
// Receive must have joined theirs.
func (l *leaks) check(t *testing.T) {
	t.Helper()
	if kids := children(t); len(kids) != 0 {
		t.Errorf("plugin processes left running: %v", kids)
	}
	if n := openFiles(t); n != l.fds {
		t.Errorf("%d open files after the session, %d before", n, l.fds)
	}
	deadline := time.Now().Add(10 * time.Second) // a loaded machine may run them late
	for runtime.NumGoroutine() > l.goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > l.goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the session, %d before:\n%s", n, l.goroutines, buf[:runtime.Stack(buf, true)])
	}
}

func openFiles(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children lists the processes (zombies included) whose parent is this
// one.
func children(t *testing.T) []string {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		i := bytes.LastIndexByte(b, ')')
		var state string
		var ppid int
		if i < 0 || func() bool { _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); return err != nil }() {
			continue
		}
		if ppid == os.Getpid() {
			out = append(out, strings.TrimSpace(string(b[:i+1]))+" "+state)
		}
	}
	return out
}

// records is a slog.Handler that keeps every record, for tests of what
// reaches the log. The handlers WithAttrs makes share the records.
type records struct {
	min   slog.Level  // Enabled from this level on
	attrs []slog.Attr // With's
	s     *recordStore
}

type recordStore struct {
	mu  sync.Mutex
	all []record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
	dups  []string // keys that came more than once
}

func newRecords() *records { return &records{min: slog.LevelDebug - 4, s: &recordStore{}} }

func (h *records) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h *records) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		if _, ok := rec.attrs[a.Key]; ok {
			rec.dups = append(rec.dups, a.Key)
		}
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.all = append(h.s.all, rec)
	return nil
}

func (h *records) WithAttrs(as []slog.Attr) slog.Handler {
	return &records{min: h.min, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), s: h.s}
}

func (h *records) WithGroup(string) slog.Handler { return h }

// get returns the records so far.
func (h *records) get() []record {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return append([]record(nil), h.s.all...)
}
