package plugproc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Exit is how a plugin process ended, for reports that must say why a
// plugin is gone (issue 13: a crash's exit status and last log line used
// to reach only the VMM's stderr).
type Exit struct {
	// Exited is true once the process was reaped.
	Exited bool
	// Status is the process's end as os.ProcessState says it: "exit
	// status 3", "signal: killed".
	Status string
	// LastError is the last record the plugin logged at level ERROR
	// (message and key=value pairs), or the first line of a Go panic or
	// fatal error it wrote to stderr; "" if neither.
	LastError string
}

// Exit reports how the process ended; Exited is false while it runs.
func (p *Process) Exit() Exit {
	if p.run == nil {
		return Exit{}
	}
	return p.run.tail.exit()
}

// maxTailLine bounds the error line kept from a plugin's stderr.
const maxTailLine = 1024

// stderrTail passes a plugin's stderr through to go-plugin (which relays
// each record to the host's logger) and remembers its last error line.
type stderrTail struct {
	r io.ReadCloser

	mu      sync.Mutex
	partial []byte // bytes after the last newline
	last    string // last error record
	panic   string // first panic / fatal error line
	status  string // set by cmdRunner.Wait
	exited  bool
}

func newStderrTail(r io.ReadCloser) *stderrTail { return &stderrTail{r: r} }

// Read implements io.Reader: what go-plugin reads, unchanged.
func (t *stderrTail) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		t.feed(b[:n])
	}
	return n, err
}

// Close implements io.Closer.
func (t *stderrTail) Close() error { return t.r.Close() }

func (t *stderrTail) feed(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(t.partial) < 64*1024 {
				t.partial = append(t.partial, b...)
			}
			return
		}
		line := string(append(t.partial, b[:i]...))
		t.partial = t.partial[:0]
		b = b[i+1:]
		t.line(line)
	}
}

// line classifies one stderr line: an hclog JSON record (the plugin
// side's Logger) or plain text (a panic, a runtime fatal error).
func (t *stderrTail) line(s string) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		var rec map[string]any
		if json.Unmarshal([]byte(s), &rec) == nil {
			if lvl, _ := rec["@level"].(string); lvl == "error" {
				t.last = clip(formatRecord(rec))
			}
			return
		}
	}
	if t.panic == "" && (strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ")) {
		t.panic = clip(s)
	}
}

// formatRecord is an hclog JSON record as "message k=v ...", keys sorted.
func formatRecord(rec map[string]any) string {
	msg, _ := rec["@message"].(string)
	var keys []string
	for k := range rec {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, rec[k])
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > maxTailLine {
		return s[:maxTailLine] + "..."
	}
	return s
}

func (t *stderrTail) setExit(status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status, t.exited = status, true
}

func (t *stderrTail) exit() Exit {
	if t == nil {
		return Exit{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := Exit{Exited: t.exited, Status: t.status, LastError: t.last}
	if t.panic != "" {
		e.LastError = t.panic
	}
	return e
}
