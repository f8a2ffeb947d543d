package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCall(t *testing.T) {
	path, _ := startServer(t, map[string]HandlerFunc{
		"echo": func(ctx context.Context, args json.RawMessage) (any, error) { return args, nil },
		"hang": func(ctx context.Context, _ json.RawMessage) (any, error) { <-ctx.Done(); return nil, ctx.Err() },
	})
	ctx := context.Background()

	var st statusResult
	if err := Call(ctx, path, "status", nil, &st); err != nil || st != (statusResult{"running", 42}) {
		t.Fatalf("status = %+v, %v", st, err)
	}
	var echo map[string]int
	if err := Call(ctx, path, "echo", map[string]int{"a": 1}, &echo); err != nil || echo["a"] != 1 {
		t.Fatalf("echo = %v, %v", echo, err)
	}
	if err := Call(ctx, path, "status", nil, nil); err != nil {
		t.Fatalf("nil result: %v", err)
	}
	var n int
	if err := Call(ctx, path, "status", nil, &n); err == nil || !strings.Contains(err.Error(), "decode result") {
		t.Fatalf("result type mismatch: %v", err)
	}

	err := Call(ctx, path, "nope", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Cmd != "nope" || !strings.HasPrefix(re.Message, `unknown command "nope"; known: `) {
		t.Fatalf("unknown command: %v", err)
	}
	if err.Error() != "nope: "+re.Message {
		t.Fatalf("RemoteError text %q", err.Error())
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Call(short, path, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging handler: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Call took %v past its deadline", d)
	}

	if err := Call(ctx, path, "", nil, nil); err == nil {
		t.Fatal("empty command accepted")
	}
}

// TestCallUnencodableNotSent: a request Call cannot encode (args JSON
// cannot carry, a line longer than MaxLine, no command) is never
// written, and NotSent says so: the command did not run. Before, its
// error was not NotSent, and a caller took it for a request written
// whose answer was lost, one that may have run (migrate -resolve's
// step outcome no-answer, not unreachable).
func TestCallUnencodableNotSent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock") // never dialled: nothing to write
	for _, tt := range []struct {
		name, cmd string
		args      any
		want      string
	}{
		{"oversized args", "echo", strings.Repeat("x", MaxLine), ErrLineTooLong.Error()},
		{"unencodable args", "echo", make(chan int), "encode args"},
		{"no command", "", nil, "empty command"},
	} {
		err := Call(t.Context(), path, tt.cmd, tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Call = %v, want %q", tt.name, err, tt.want)
		}
		if !NotSent(err) {
			t.Errorf("%s: NotSent(%v) = false: the request was never written", tt.name, err)
		}
	}
	if err := Call(t.Context(), path, "echo", strings.Repeat("x", MaxLine), nil); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("oversized args: %v does not wrap ErrLineTooLong", err)
	}
}

func TestCallNoServer(t *testing.T) {
	err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "status", nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "connect to control socket") {
		t.Fatalf("Call without a server = %v", err)
	}
	if !NotSent(err) {
		t.Errorf("NotSent(%v) = false: the request never left", err)
	}
}

// fakeServer answers every connection's first line with reply (which may be
// empty: close without answering).
func fakeServer(t *testing.T, reply string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return path
}

func TestCallBadServers(t *testing.T) {
	tests := []struct {
		name, reply, wantErr string
	}{
		{"closes without answering", "", "server closed the connection without answering"},
		{"not JSON", "hello\n", "malformed response"},
		{"ok false without reason", `{"ok":false}` + "\n", "x: failed (the server gave no reason)"},
	}
	for _, tt := range tests {
		err := Call(context.Background(), fakeServer(t, tt.reply), "x", nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Call = %v, want %q", tt.name, err, tt.wantErr)
		}
		if NotSent(err) { // the request was written: it may have run
			t.Errorf("%s: NotSent(%v) = true", tt.name, err)
		}
	}
}
