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
		return fmt.Errorf("%s (%v) is readable by every user, who could then pose as its side of the migration: chmod o-r %s",
			path, fi.Mode(), path)
	}
	return nil
}

// link is one entry of a path's chain: its path and what Lstat says.
type link struct {
	path string
	fi   os.FileInfo
	st   *syscall.Stat_t
}

// checkChain checks p (not following a final symbolic link) and each
// directory above it up to /, from / down. Every entry must belong to
// this user or root. Its mode matters only while someone else can reach
// it: below a directory that neither every user nor a foreign group may
// search (a 0700 directory: t.TempDir(), the go command's build
// directories, a home directory), nobody else can open, replace or
// rename anything by its path, so a file a umask of 0 left writable by
// every user there passes. That holds for paths; a directory that was
// open to others earlier may still be held open by them, which no check
// of the present modes can see.
func checkChain(p string) error {
	var chain []link
	for {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner to check", p)
		}
		chain = append(chain, link{p, fi, st})
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	reachable := true // by someone other than this user, root and their groups
	for i := len(chain) - 1; i >= 0; i-- {
		e := chain[i]
		if err := e.check(uid, gid, reachable); err != nil {
			return err
		}
		// A symbolic link's target is checked as a chain of its own
		// (CheckTrustedFile); its own mode means nothing.
		if e.fi.IsDir() && !e.searchableByOthers(gid) {
			reachable = false
		}
	}
	return nil
}

// check reports why e could be replaced by someone other than uid, root
// and the groups gid and 0: reachable says whether they can reach it.
func (e link) check(uid, gid uint32, reachable bool) error {
	symlink := e.fi.Mode()&os.ModeSymlink != 0 // its mode means nothing; its directory is checked
	sticky := e.fi.IsDir() && e.fi.Mode()&os.ModeSticky != 0
	found := fmt.Sprintf("%s (%v, owner uid %d, group %d)", e.path, e.fi.Mode(), e.st.Uid, e.st.Gid)
	switch {
	case e.st.Uid != uid && e.st.Uid != 0:
		return fmt.Errorf("%s belongs to neither this user (uid %d) nor root, and its owner could replace it: "+
			"chown it to uid %d or root, or use a copy in a directory of your own", found, uid, uid)
	case !reachable || symlink || sticky:
		return nil
	case e.st.Mode&0o002 != 0:
		return fmt.Errorf("%s is writable by every user, who could replace it: chmod o-w %s", found, e.path)
	case e.st.Mode&0o020 != 0 && e.st.Gid != gid && e.st.Gid != 0:
		return fmt.Errorf("%s is writable by group %d, whose members could replace it: chmod g-w %s "+
			"(or chgrp it to your group %d)", found, e.st.Gid, e.path, gid)
	}
	return nil
}

// searchableByOthers reports whether someone other than the directory
// e's owner, root and the groups gid and 0 may search it: every user
// (o+x), or the members of a foreign group (g+x).
func (e link) searchableByOthers(gid uint32) bool {
	if e.st.Mode&0o001 != 0 {
		return true
	}
	return e.st.Mode&0o010 != 0 && e.st.Gid != gid && e.st.Gid != 0
}
