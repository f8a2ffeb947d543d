package plugintest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Log collects a test host's logs, the plugins' included (a plugin's
// non-JSON stderr, such as a race report, arrives at Debug): warnings
// and errors also go to the test log, and a data race a plugin process
// reports fails the test when it ends.
type Log struct {
	mu    sync.Mutex
	t     testing.TB
	all   strings.Builder // the first MiB
	race  bool
	ended bool
}

// NewLog returns a Log that checks for races when t ends.
func NewLog(t testing.TB) *Log {
	w := &Log{t: t}
	t.Cleanup(w.finish)
	return w
}

// Logger is a host logger for tests (NewLog(t).Logger()).
func Logger(t testing.TB) hclog.Logger { return NewLog(t).Logger() }

// Logger returns a host logger at Debug writing to w.
func (w *Log) Logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: w})
}

// Write implements io.Writer.
func (w *Log) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := string(p)
	if w.all.Len() < 1<<20 {
		w.all.WriteString(s)
	}
	w.race = w.race || strings.Contains(s, "DATA RACE")
	if !w.ended && (strings.Contains(s, "[ERROR]") || strings.Contains(s, "[WARN]")) {
		w.t.Log(strings.TrimSpace(s))
	}
	return len(p), nil
}

// String is everything logged so far (up to about 1 MiB).
func (w *Log) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// finish runs when the test ends; a plugin may still write for a moment
// (its Kill may run after this), so it waits briefly for a race report.
func (w *Log) finish() {
	time.Sleep(10 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.race {
		w.t.Errorf("a plugin process reported a data race:\n%s", w.all.String())
	}
}
