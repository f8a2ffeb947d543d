package control

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// listen binds a unix stream socket at path with mode 0600. A socket file
// left behind by a dead process is replaced; a socket someone is listening
// on, or any other kind of file, is left alone and reported.
//
// The socket is never reachable with the caller's umask: it is bound in
// a fresh 0700 directory next to path, made 0600 there, and renamed into
// place without replacing anything (RENAME_NOREPLACE). Because of that
// detour a path must leave room for the directory's name: at most
// maxSocketPath-bindSlack bytes.
func listen(path string) (*net.UnixListener, os.FileInfo, error) {
	if len(path) > maxSocketPath-bindSlack {
		return nil, nil, fmt.Errorf("control socket path %q is %d bytes; it may have at most %d (a unix socket path holds %d, and the socket is first bound in a private directory next to it)",
			path, len(path), maxSocketPath-bindSlack, maxSocketPath)
	}
	if err := removeStale(path); err != nil {
		return nil, nil, err
	}
	ln, err := bindPrivate(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("stat control socket: %w", err)
	}
	return ln, fi, nil
}

// bindSlack is how much longer than the final path the socket's path
// while it is bound is: "/.c" + 4 hex digits + "/s" (privateDir).
const bindSlack = 9

// privateDir makes a fresh directory of mode 0700 in dir, with a short
// name so the socket bound in it fits sun_path.
func privateDir(dir string) (string, error) {
	for range 100 {
		p := filepath.Join(dir, fmt.Sprintf(".c%04x", rand.N(0x10000)))
		err := os.Mkdir(p, 0o700)
		if err == nil {
			return p, os.Chmod(p, 0o700) // 0700 minus the umask
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("100 names taken in %s", dir)
}

// bindPrivate binds the socket in a private directory in path's
// directory, restricts it and renames it to path.
func bindPrivate(path string) (*net.UnixListener, error) {
	tmp, err := privateDir(filepath.Dir(path))
	if tmp != "" {
		defer os.RemoveAll(tmp)
	}
	if err != nil {
		return nil, fmt.Errorf("make a private directory for the control socket: %w", err)
	}
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // Server removes the file itself, if still its own
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	if err := renameNoReplace(bound, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// renameNoReplace moves the bound socket to path unless something took
// path since removeStale looked.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: a hard link also
		// refuses to replace.
		if err = os.Link(from, to); err == nil {
			return nil
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s appeared while the control socket was being made; stop whoever creates it or choose another path", to)
	}
	if err != nil {
		return fmt.Errorf("move control socket into place: %w", err)
	}
	return nil
}

// removeStale removes path if it is a unix socket nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check control socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another control socket path", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another process is listening on %s; stop it or choose another control socket path", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

// removeIfOurs removes path if it is still the socket described by fi.
func removeIfOurs(path string, fi os.FileInfo) error {
	cur, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat control socket: %w", err)
	}
	if !os.SameFile(cur, fi) {
		return nil // replaced by someone else: not ours to remove
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove control socket: %w", err)
	}
	return nil
}
