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

// waitLines waits until s holds n lines (at most 10 s) and returns when
// it saw them: the summary timer may run late on a loaded machine.
func (s *syncBuffer) waitLines(n int) time.Time {
	for deadline := time.Now().Add(10 * time.Second); len(s.lines()) < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return time.Now()
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
	l, buf := newTest(time.Second) // the burst takes milliseconds, and a loaded machine's pauses less than this
	defer l.Stop()
	for i := range 10000 {
		l.Warn("bad descriptor", "i", i)
	}
	buf.waitLines(2)
	time.Sleep(100 * time.Millisecond) // room for lines that must not come
	got := buf.lines()
	want := []string{`level=WARN msg="bad descriptor" i=0`, `level=WARN msg="bad descriptor" i=9999 repeated=9999 since=`}
	if len(got) != 2 || got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) {
		t.Fatalf("log:\n%s\nwant the first occurrence and one summary:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMessagesApart: each message has its own window, and a message
// quiet for an interval is logged at once again.
func TestMessagesApart(t *testing.T) {
	const every = 500 * time.Millisecond // the three calls below take far less, even on a loaded machine
	l, buf := newTest(every)
	defer l.Stop()
	l.Warn("a")
	l.Error("b")
	l.Warn("a") // counted
	summed := buf.waitLines(3)
	// Quiet for an interval since the summary: a new window, logged at once.
	time.Sleep(every - time.Since(summed))
	l.Warn("a")
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
