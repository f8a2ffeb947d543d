package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Another local user, played by a copy of this test binary run as uid
// 65534 (strangerHelper). Tests that need it run only as root.

const (
	strangerUID  = 65534
	strangerEnv  = "FERRY_CONTROL_STRANGER" // serve:PATH or dial:PATH
	strangerTest = "TestStrangerHelper"
)

// TestStrangerHelper is the stranger's side; it does nothing unless run
// by startStranger.
func TestStrangerHelper(t *testing.T) {
	mode, path, ok := strings.Cut(os.Getenv(strangerEnv), ":")
	if !ok {
		t.Skip("run by startStranger only")
	}
	switch mode {
	case "serve": // a fake VMM at a path the real one left free
		s, err := NewServer(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Handle("migrate-resolve", func(context.Context, json.RawMessage) (any, error) {
			return map[string]string{"role": "receive", "side": "running"}, nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { io.Copy(io.Discard, os.Stdin); cancel() }() // until the test closes stdin
		go func() { time.Sleep(time.Millisecond); os.Stdout.WriteString("ready\n") }()
		s.Serve(ctx)
	case "serve-abstract": // a name in the abstract namespace, which has no directory
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close() // held open, never answered
			}
		}()
		os.Stdout.WriteString("ready\n")
		io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	case "dial": // connect to a root VMM's socket
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := Call(ctx, path, "status", nil, nil)
		os.Stdout.WriteString("dial: " + errText(err) + "\n")
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// startStranger runs the helper as uid 65534 in mode on path and returns
// its first line of output; it is stopped at the end of the test.
func startStranger(t *testing.T, mode, path string) string {
	if os.Getuid() != 0 {
		t.Skip("needs root to play another user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "stranger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "helper")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+strangerTest+"$")
	cmd.Env = append(os.Environ(), strangerEnv+"="+mode+":"+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: strangerUID, Gid: strangerUID}}
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("the stranger's helper said nothing in 20 s")
		return ""
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// sharedDir is a directory like /tmp: anyone may create files in it.
func sharedDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "shared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStrangerCannotConnect: another local user cannot talk to a VMM's
// control socket, even in a directory everyone may enter.
func TestStrangerCannotConnect(t *testing.T) {
	path := filepath.Join(sharedDir(t), "vmm.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("status", func(context.Context, json.RawMessage) (any, error) { return "running", nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	got := startStranger(t, "dial", path)
	if !strings.Contains(got, "permission denied") {
		t.Fatalf("another user's call: %q, want permission denied", got)
	}
}

// TestCallRefusesStranger: another local user that took a job's socket
// path in a shared directory (the VMM not started yet, or gone) is not
// taken for the VMM: Call refuses to talk to it. Found by audit: migrate
// sent such a socket the session's private key with migrate-incoming,
// and took its "running" for the destination's answer.
func TestCallRefusesStranger(t *testing.T) {
	path := filepath.Join(sharedDir(t), "dst.sock")
	if got := startStranger(t, "serve", path); got != "ready" {
		t.Fatalf("helper: %q", got)
	}
	var res map[string]string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Call(ctx, path, "migrate-resolve", map[string]string{"action": "query"}, &res)
	var re *RemoteError
	if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("Call to another user's socket: %v (answer %v), want a refusal naming uid 65534", err, res)
	}
}

// TestCallRefusesAbstractStranger: a path that names the abstract
// namespace ("@name": no file, no directory; ferry-vmm never binds one)
// is served by whoever bound the name first. Call took the directory of
// "@name" to be ".", and trusted the owner of its working directory: run
// from a directory another user owns, it sent that user's socket the
// request (with migrate-incoming, the session's private key).
func TestCallRefusesAbstractStranger(t *testing.T) {
	name := fmt.Sprintf("@ferry-stranger-%d", os.Getpid())
	if got := startStranger(t, "serve-abstract", name); got != "ready" {
		t.Fatalf("helper: %q", got)
	}
	theirs := t.TempDir()
	if err := os.Chown(theirs, strangerUID, strangerUID); err != nil {
		t.Fatal(err)
	}
	t.Chdir(theirs)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := Call(ctx, name, "migrate-resolve", map[string]string{"action": "query"}, nil)
	if err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("Call to another user's abstract socket: %v, want a refusal naming uid 65534", err)
	}
}
