package guestlog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink the summary timer may write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func newTest(every time.Duration) (*Limiter, *syncBuffer) {
	var buf syncBuffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return New(slog.New(h), every), &buf
}

// TestSpamIsSummarised: 10000 bad descriptors in a burst make two lines,
// the first occurrence and one summary with the count.
func TestSpamIsSummarised(t *testing.T) {
	l, buf := newTest(100 * time.Millisecond)
	defer l.Stop()
	for i := range 10000 {
		l.Warn("bad descriptor", "i", i)
	}
	time.Sleep(300 * time.Millisecond)
	got := buf.lines()
	want := []string{`level=WARN msg="bad descriptor" i=0`, `level=WARN msg="bad descriptor" i=9999 repeated=9999 since=`}
	if len(got) != 2 || got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) {
		t.Fatalf("log:\n%s\nwant the first occurrence and one summary:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMessagesApart: each message has its own window, and a message
// quiet for an interval is logged at once again.
func TestMessagesApart(t *testing.T) {
	l, buf := newTest(50 * time.Millisecond)
	defer l.Stop()
	l.Warn("a")
	l.Error("b")
	l.Warn("a") // counted
	time.Sleep(150 * time.Millisecond)
	l.Warn("a") // a new window: logged at once
	got := buf.lines()
	want := []string{`level=WARN msg=a`, `level=ERROR msg=b`, `level=WARN msg=a repeated=1`, `level=WARN msg=a`}
	if len(got) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d = %q, want %q...", i, got[i], want[i])
		}
	}
	if strings.Contains(got[3], "repeated") {
		t.Errorf("a quiet message logged again with a count: %q", got[3])
	}
}
