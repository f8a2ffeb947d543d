package job

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CheckPluginFile reports why the plugin binary at path must not be run,
// or nil. A plugin runs as the VMM's user with the guest's RAM and the
// session's credentials, so whoever can replace its binary gets the
// guest: CheckTrustedFile's rule.
func CheckPluginFile(path string) error { return CheckTrustedFile(path) }

// CheckTrustedFile reports why the file at path may have been put there
// or changed by someone other than this process's user or root, or nil:
// the file and every directory above it (of path as written and as its
// symbolic links resolve) must be owned by this process's user or root,
// and writable by no one else: not by every user (a directory with the
// sticky bit, like /tmp, lets nobody replace another's entry, and
// passes), and by its group only when that is this process's own group
// or root's. The rule of migrate's control sockets (docs/JOBS.md,
// "Security"), for plugin binaries and the security block's files.
func CheckTrustedFile(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	for _, p := range []string{abs, real} {
		if err := checkChain(p); err != nil {
			return err
		}
	}
	return nil
}

// CheckKeyFile is CheckTrustedFile for a private key, which also must not
// be readable by every user.
func CheckKeyFile(path string) error {
	if err := CheckTrustedFile(path); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return fmt.Errorf("%s is readable by every user, who could then pose as its side of the migration: chmod o-r it", path)
	}
	return nil
}

// checkChain checks p (not following a final symbolic link) and each
// directory above it up to /.
func checkChain(p string) error {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	for {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner to check", p)
		}
		sticky := fi.IsDir() && fi.Mode()&os.ModeSticky != 0
		symlink := fi.Mode()&os.ModeSymlink != 0 // its mode means nothing; its directory is checked next
		switch {
		case st.Uid != uid && st.Uid != 0:
			return fmt.Errorf("%s is owned by uid %d, neither this user (uid %d) nor root: that user could replace it", p, st.Uid, uid)
		case !symlink && !sticky && st.Mode&0o002 != 0:
			return fmt.Errorf("%s is writable by every user, who could replace it: chmod o-w it", p)
		case !symlink && !sticky && st.Mode&0o020 != 0 && st.Gid != gid && st.Gid != 0:
			return fmt.Errorf("%s is writable by group %d, whose members could replace it: chmod g-w it", p, st.Gid)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}
