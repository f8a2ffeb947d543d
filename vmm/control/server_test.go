package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type statusResult struct {
	State string `json:"state"`
	Pages int    `json:"pages"`
}

// startServer runs a server with pause, quit, resume and status handlers
// (plus extra) and stops it when the test ends, checking that Serve
// returns nil and removes the socket.
func startServer(t *testing.T, extra map[string]HandlerFunc) (string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	nop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	s.Handle("pause", nop)
	s.Handle("quit", nop)
	s.Handle("resume", nop)
	s.Handle("status", func(ctx context.Context, args json.RawMessage) (any, error) {
		return statusResult{State: "running", Pages: 42}, nil
	})
	for name, h := range extra {
		s.Handle(name, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket file still there after Serve: %v", err)
		}
	})
	return path, s
}

// rawConn is a test client that speaks lines directly.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line (a newline is added) and returns the response line.
func (rc *rawConn) roundTrip(line string) string {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(line + "\n")); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
	return rc.readLine()
}

func (rc *rawConn) readLine() string {
	rc.t.Helper()
	resp, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	return strings.TrimSuffix(resp, "\n")
}

func TestServerResponses(t *testing.T) {
	path, _ := startServer(t, map[string]HandlerFunc{
		"echo": func(ctx context.Context, args json.RawMessage) (any, error) { return args, nil },
		"fail": func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("pause: vCPU 1 did not stop within 5s")
		},
	})
	tests := []struct {
		name, line, want string
	}{
		{"status", `{"cmd":"status"}`, `{"ok":true,"result":{"state":"running","pages":42}}`},
		{"nil result", `{"cmd":"pause"}`, `{"ok":true}`},
		{"args reach the handler", `{"cmd":"echo","args":{"a":[1,2]}}`, `{"ok":true,"result":{"a":[1,2]}}`},
		{"handler error", `{"cmd":"fail"}`, `{"ok":false,"error":"pause: vCPU 1 did not stop within 5s"}`},
		{"unknown command", `{"cmd":"x"}`, `{"ok":false,"error":"unknown command \"x\"; known: echo, fail, pause, quit, resume, status"}`},
		{"malformed JSON", `{"cmd":`, `{"ok":false,"error":"malformed request: unexpected end of JSON input"}`},
		{"unknown field", `{"cmd":"status","verbose":true}`, `{"ok":false,"error":"unknown field \"verbose\" in request; allowed: cmd, args"}`},
		{"not an object", `status`, `{"ok":false,"error":"request must be a JSON object like {\"cmd\":\"status\"}"}`},
	}
	// All on one connection: errors must leave it usable.
	rc := dial(t, path)
	for _, tt := range tests {
		if got := rc.roundTrip(tt.line); got != tt.want {
			t.Errorf("%s: response %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestUnknownCommandListsKnown(t *testing.T) {
	path, _ := startServer(t, nil)
	got := dial(t, path).roundTrip(`{"cmd":"x"}`)
	want := `{"ok":false,"error":"unknown command \"x\"; known: pause, quit, resume, status"}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestSeveralRequestsOneConnection(t *testing.T) {
	path, _ := startServer(t, nil)
	rc := dial(t, path)
	// Pipelined: write three requests and a blank line at once, then read.
	if _, err := rc.c.Write([]byte("{\"cmd\":\"status\"}\n\n{\"cmd\":\"pause\"}\r\n{\"cmd\":\"resume\"}\n")); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`{"ok":true,"result":{"state":"running","pages":42}}`, `{"ok":true}`, `{"ok":true}`} {
		if got := rc.readLine(); got != want {
			t.Fatalf("response %d = %s, want %s", i, got, want)
		}
	}
	// A final request without a newline is still answered at EOF.
	rc.c.Write([]byte(`{"cmd":"status"}`))
	rc.c.(*net.UnixConn).CloseWrite()
	if got := rc.readLine(); !strings.HasPrefix(got, `{"ok":true`) {
		t.Fatalf("response to unterminated request = %s", got)
	}
}

func TestOversizedLineClosesConnection(t *testing.T) {
	path, _ := startServer(t, nil)
	rc := dial(t, path)
	if got := rc.roundTrip(`{"cmd":"status"}`); !strings.HasPrefix(got, `{"ok":true`) {
		t.Fatalf("first response %s", got)
	}
	big := `{"cmd":"status","args":"` + strings.Repeat("x", MaxLine) + `"}`
	got := rc.roundTrip(big)
	if want := `{"ok":false,"error":"request line longer than 65536 bytes; closing the connection"}`; got != want {
		t.Fatalf("response %s, want %s", got, want)
	}
	if line, err := rc.r.ReadString('\n'); err == nil {
		t.Fatalf("connection still open after an oversized line: read %q", line)
	}
	// The server itself is fine.
	if got := dial(t, path).roundTrip(`{"cmd":"status"}`); !strings.HasPrefix(got, `{"ok":true`) {
		t.Fatalf("new connection: %s", got)
	}
}

func TestConcurrentClients(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	path, _ := startServer(t, map[string]HandlerFunc{
		"count": func(ctx context.Context, args json.RawMessage) (any, error) {
			var n int
			if err := json.Unmarshal(args, &n); err != nil {
				return nil, err
			}
			mu.Lock()
			calls++
			mu.Unlock()
			return n * 2, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for c := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				var got int
				if err := Call(ctx, path, "count", c*100+i, &got); err != nil {
					errs <- err
					return
				}
				if got != 2*(c*100+i) {
					errs <- fmt.Errorf("count(%d) = %d", c*100+i, got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if calls != 200 {
		t.Fatalf("%d handler calls, want 200", calls)
	}
}

func TestHandlerDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHandlerTimeout(50 * time.Millisecond)
	s.Handle("slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		<-ctx.Done()
		return nil, fmt.Errorf("slow: %w", ctx.Err())
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	err = Call(context.Background(), path, "slow", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "slow: context deadline exceeded" {
		t.Fatalf("Call = %v, want the handler's deadline error", err)
	}
}

func TestHandlerPanic(t *testing.T) {
	path, _ := startServer(t, map[string]HandlerFunc{
		"boom": func(context.Context, json.RawMessage) (any, error) { panic("oops") },
	})
	rc := dial(t, path)
	if got := rc.roundTrip(`{"cmd":"boom"}`); !strings.Contains(got, `"ok":false`) || !strings.Contains(got, "panicked") {
		t.Fatalf("response %s", got)
	}
	if got := rc.roundTrip(`{"cmd":"status"}`); !strings.HasPrefix(got, `{"ok":true`) {
		t.Fatalf("after panic: %s", got)
	}
}

func TestUnencodableResult(t *testing.T) {
	path, _ := startServer(t, map[string]HandlerFunc{
		"chan": func(context.Context, json.RawMessage) (any, error) { return make(chan int), nil },
	})
	if got := dial(t, path).roundTrip(`{"cmd":"chan"}`); !strings.HasPrefix(got, `{"ok":false,"error":"chan: encode result:`) {
		t.Fatalf("response %s", got)
	}
}

func TestServeStopsWithOpenConnectionsAndRunningHandler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	s.Handle("wait", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	idle := dial(t, path) // connected, never sends
	busy := dial(t, path)
	busy.c.Write([]byte("{\"cmd\":\"wait\"}\n"))
	<-entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file not removed: %v", err)
	}
	if _, err := idle.r.ReadString('\n'); err == nil {
		t.Fatal("idle connection still open")
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("still accepting connections")
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("second Serve succeeded")
	}
}

func TestHandleMisuse(t *testing.T) {
	s, err := NewServer(filepath.Join(t.TempDir(), "ctl.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	s.Handle("status", nop)
	for name, f := range map[string]func(){
		"duplicate":   func() { s.Handle("status", nop) },
		"empty name":  func() { s.Handle("", nop) },
		"nil handler": func() { s.Handle("x", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Handle did not panic", name)
				}
			}()
			f()
		}()
	}
}
