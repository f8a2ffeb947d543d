package control

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewServerSocketMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantPrivateSocket(t, path, "")
}

// wantPrivateSocket checks that path is a socket with mode 0600; under
// says in what conditions it was made (" under umask 000"), for the
// failure.
func wantPrivateSocket(t *testing.T, path, under string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v%s, want a socket with 0600", fi.Mode(), under)
	}
}

// mustDial checks that the socket at path takes a connection; what
// begins the failure ("live socket broken").
func mustDial(t *testing.T, path, what string) {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	conn.Close()
}

// TestNewServerSocketModeUmask000: the socket is made 0600 before it
// is reachable, so even under umask 000 no one else can connect in a
// window; the private directory it was bound in is gone afterwards.
func TestNewServerSocketModeUmask000(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantPrivateSocket(t, path, " under umask 000")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %v; want only the socket", entries)
	}
	mustDial(t, path, "dial the socket at its final path")
}

// TestNewServerDoesNotReplace: a file that appears at the path between
// the stale check and the rename is kept, and the error says so.
func TestNewServerDoesNotReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl.sock")
	if err := os.WriteFile(path, []byte("someone's"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpLn, err := bindPrivate(path)
	if err == nil {
		tmpLn.Close()
		t.Fatal("bindPrivate replaced an existing file")
	}
	if b, _ := os.ReadFile(path); string(b) != "someone's" {
		t.Errorf("the file at the path now holds %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v after the failure; want only the file", entries)
	}
}

func TestNewServerReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a crashed VMM leaves the file behind
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatalf("NewServer over a stale socket: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket: %v", err)
	}
}

func TestNewServerRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewServer(path, nil)
	if err == nil || !strings.Contains(err.Error(), "another process is listening on "+path) {
		t.Fatalf("NewServer on a live socket = %v", err)
	}
	// The live socket still works.
	mustDial(t, path, "live socket broken")
}

func TestNewServerRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(file, nil); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("NewServer over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Fatal("regular file was touched")
	}
	if _, err := NewServer(dir, nil); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("NewServer over a directory = %v", err)
	}
}

func TestNewServerPathErrors(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("x", 120))
	if _, err := NewServer(long, nil); err == nil || !strings.Contains(err.Error(), "at most 98") {
		t.Fatalf("long path: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "ctl.sock")
	if _, err := NewServer(missing, nil); err == nil {
		t.Fatal("NewServer in a missing directory succeeded")
	}
}

func TestCloseLeavesAReplacedSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := NewServer(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Someone removes our socket and starts their own at the same path.
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed a socket it did not create: %v", err)
	}
}
