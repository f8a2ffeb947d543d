package session_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/session"
)

// TestPluginLogs: each message a plugin logs reaches slog once, as one
// record with the plugin's level, its message unwrapped, its key/values
// as attributes and plugin=<binary name>; a level the embedder's handler
// does not enable is not logged at all.
func TestPluginLogs(t *testing.T) {
	levels := map[string]slog.Level{
		"trace message": slog.LevelDebug - 4, "debug message": slog.LevelDebug,
		"info message": slog.LevelInfo, "warn message": slog.LevelWarn, "error message": slog.LevelError,
	}
	for _, min := range []slog.Level{slog.LevelDebug - 4, slog.LevelInfo} {
		t.Run(min.String(), func(t *testing.T) {
			logs := newRecords()
			logs.min = min
			runLogger(t, slog.New(logs))
			seen := map[string]int{}
			for _, r := range logs.get() {
				if len(r.dups) > 0 {
					t.Errorf("record %q has attributes %v twice", r.msg, r.dups)
				}
				if strings.Contains(r.msg, "[INFO]") || strings.Contains(r.msg, "[WARN]") || strings.Contains(r.msg, "{") {
					t.Errorf("a formatted plugin line reached slog: %q", r.msg)
				}
				lv, ok := levels[r.msg]
				if !ok {
					continue // go-plugin's own records
				}
				seen[r.msg]++
				if r.level != lv || r.attrs["plugin"] != "ferry-hint-logger" || r.attrs["n"] == "" || r.attrs["timestamp"] != "" {
					t.Errorf("record %q: level %v, attributes %v; want level %v, plugin=ferry-hint-logger, n, no timestamp",
						r.msg, r.level, r.attrs, lv)
				}
			}
			for msg, lv := range levels {
				want := 0
				if lv >= min {
					want = 1
				}
				if seen[msg] != want {
					t.Errorf("%q logged %d times, want %d", msg, seen[msg], want)
				}
			}
		})
	}
}

// TestPluginLogValues: a duration a plugin logs reads as a duration, a
// count as a whole number, not as the float64 go-plugin decodes.
func TestPluginLogValues(t *testing.T) {
	logs := newRecords()
	logs.min = slog.LevelInfo
	runLogger(t, slog.New(logs))
	for _, r := range logs.get() {
		if r.msg != "info message" {
			continue
		}
		if r.attrs["took"] != "148ms" || r.attrs["pages"] != "1048576" || r.attrs["n"] != "2" {
			t.Errorf("took=%q pages=%q n=%q; want 148ms, 1048576, 2", r.attrs["took"], r.attrs["pages"], r.attrs["n"])
		}
		return
	}
	t.Error("the info message did not arrive")
}

// runLogger starts the logger plugin through the session's adapter,
// asks its Info (which logs) and stops it.
func runLogger(t *testing.T, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, plugin("ferry-hint-logger"), nil, session.HclogFor(log, plugin("ferry-hint-logger")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Info(ctx); err == nil {
		t.Error("the logger plugin's Info did not fail")
	}
	p.Kill() // waits for go-plugin's stderr reader: every line is in
}

// TestAdapter: the adapter's own contract, without a plugin: With's
// pairs come first, go-plugin's timestamp is dropped and its plugin
// path renamed, levels below the handler's are not forwarded, names do
// not reach the record.
func TestAdapter(t *testing.T) {
	logs := newRecords()
	logs.min = slog.LevelInfo
	l := session.HclogFor(slog.New(logs), "/x/ferry-hint-y")
	if l.GetLevel() != hclog.Info || l.IsDebug() || !l.IsInfo() {
		t.Errorf("level %v, want Info (the handler's)", l.GetLevel())
	}
	l = l.Named("ferry-hint-y").With("a", 1)
	l.Debug("dropped")
	l.Warn("kept", "b", 2, "timestamp", "2026-12-04T19:14:31.861Z", "plugin", "/x/ferry-hint-y")
	l.StandardLogger(nil).Print("standard line")
	got := logs.get()
	if len(got) != 2 {
		t.Fatalf("records %+v, want 2", got)
	}
	r := got[0]
	if r.msg != "kept" || r.level != slog.LevelWarn || r.attrs["a"] != "1" || r.attrs["b"] != "2" ||
		r.attrs["plugin"] != "ferry-hint-y" || r.attrs["path"] != "/x/ferry-hint-y" || r.attrs["timestamp"] != "" {
		t.Errorf("record %+v", r)
	}
	if got[1].msg != "standard line" || got[1].level != slog.LevelInfo {
		t.Errorf("standard logger's record %+v", got[1])
	}
}

// TestPluginLogsAtDebug: a host logging the way ferry-vmm -log-level
// debug does (slog's text handler at LevelDebug) gets the plugin's debug
// records, not its trace ones, and its durations as durations.
func TestPluginLogsAtDebug(t *testing.T) {
	var out syncBuffer
	runLogger(t, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	text := out.String()
	for _, want := range []string{`level=DEBUG msg="debug message" plugin=ferry-hint-logger`, ` took=148ms`, ` pages=1048576`} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the host's log:\n%s", want, text)
		}
	}
	if strings.Contains(text, "trace message") {
		t.Errorf("a trace record passed a debug handler:\n%s", text)
	}
}

// syncBuffer is a bytes.Buffer safe for go-plugin's log goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
