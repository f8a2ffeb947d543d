package control

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who Call talks to. The server's socket is 0600, so nobody but its own
// user (and root) can connect to a VMM. The other way round, a client
// only has the path: a socket bound there by another local user (in a
// shared directory such as /tmp, while the VMM is not started yet or
// after it has gone) would answer in its place, be handed the session's
// private key with migrate-incoming, and have its answers taken for the
// VMM's in a handover's resolution. Call therefore checks the server's
// credentials (SO_PEERCRED: the process that listens) and talks only to
//
//	this process's own user, root, or the owner of the socket's directory
//
// (whoever owns the directory decides what is bound in it anyway: a VMM
// run as user ferry with its socket in /run/ferry, driven by root).

// checkPeer refuses a server at path that is none of those users.
func checkPeer(conn net.Conn, path string) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("control socket %s: who serves it: %w", path, cerr)
	}
	if cred.Uid == 0 || int(cred.Uid) == os.Getuid() || cred.Uid == dirOwner(path) {
		return nil
	}
	return fmt.Errorf("control socket %s is served by uid %d (pid %d), which is neither this user, root, nor the owner of %s: "+
		"not talking to it (another local user may have taken the path; keep control sockets in a directory only their user can write)",
		path, cred.Uid, cred.Pid, filepath.Dir(path))
}

// dirOwner is the uid that owns path's directory, or root's if unknown
// (root is trusted anyway). A name in the abstract namespace ("@name",
// or a leading NUL) has no directory: anyone may bind it, so no owner
// is trusted for it (filepath.Dir would say ".", the working directory).
func dirOwner(path string) uint32 {
	if strings.HasPrefix(path, "@") || strings.HasPrefix(path, "\x00") {
		return 0
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}
