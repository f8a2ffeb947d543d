package vmm

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// state-save's temporary files, and what a crash leaves of them.
//
// writeFileAtomic names its temporary file after the path, the host
// boot and pid namespace it runs in (writerTag) and its process's pid:
//
//	.<base>.tmp-<writer tag>-<pid>-<random>     beside <base>, 0600
//
// A VMM that exits while its write is abandoned (a file system that did
// not answer: state_file.go) or is killed between the write and the
// rename leaves that file behind; nothing else removes it. The next
// state-save to the same path, by any VMM of the same boot and pid
// namespace, removes every such file of that path whose pid names no
// process (removeDeadWriters): its writer is gone for good, so nobody
// renames it any more. It never removes a file of a process that is
// alive (its own process's included: another VM of this process may be
// writing it), one of another writer tag (another host sharing the
// directory, another pid namespace, where the pid means something else,
// or an earlier boot of this host), one of another base name, nor
// anything else in the directory. What it cannot do: tell an earlier
// boot of this host from another host, so the files a host crash left
// stay until removed by hand (they hold a state that was never
// committed); and it looks only when a state-save to that path runs.

// writerTag names this process's boot and pid namespace in its
// temporary files' names: 16 hex digits of a hash of the kernel's
// boot_id and the pid namespace's inode, or "" where either cannot be
// read (then the names carry no tag nor pid, and no file is ever
// removed). Within one boot two live pid namespaces never share an
// inode, so a tag seen here with a pid that names no process here is a
// writer of this boot and namespace that is gone (or of a namespace
// that ended, whose processes are all gone).
var writerTag = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	h.Write([]byte(strings.TrimSpace(string(boot)) + "\x00" + ns))
	return fmt.Sprintf("%016x", h.Sum64())
})

// tempPrefix is the start of the names of path's temporary files written
// by a process with writer tag tag: os.CreateTemp adds the pid and a
// random number ("<pid>-*"). tag "": no tag and no pid.
func tempPrefix(path, tag string) string {
	p := "." + filepath.Base(path) + ".tmp-"
	if tag != "" {
		p += tag + "-"
	}
	return p
}

// createTemp creates path's temporary file, 0600, named as the package
// comment above says.
func createTemp(path string) (*os.File, error) {
	tag := writerTag()
	pattern := tempPrefix(path, tag) + "*"
	if tag != "" {
		pattern = tempPrefix(path, tag) + strconv.Itoa(os.Getpid()) + "-*"
	}
	return os.CreateTemp(filepath.Dir(path), pattern)
}

// removeDeadWriters removes path's temporary files that writers of this
// boot and pid namespace left when they ended (the package comment
// above), and returns how many. A file it cannot look at or remove is
// left; it never fails the state-save that calls it.
func removeDeadWriters(path string) int {
	tag := writerTag()
	if tag == "" {
		return 0
	}
	dir, prefix := filepath.Dir(path), tempPrefix(path, tag)
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	removed := 0
	for {
		ents, err := d.ReadDir(256) // bounded memory, whatever the directory holds
		for _, e := range ents {
			if deadWriter(e, prefix) && os.Remove(filepath.Join(dir, e.Name())) == nil {
				removed++
			}
		}
		if err != nil { // io.EOF at the end
			return removed
		}
	}
}

// deadWriter reports whether e is a regular file named prefix, a pid
// and a random number, and that pid names no process here.
func deadWriter(e os.DirEntry, prefix string) bool {
	rest, ok := strings.CutPrefix(e.Name(), prefix)
	if !ok || !e.Type().IsRegular() {
		return false
	}
	pidText, random, ok := strings.Cut(rest, "-")
	if !ok || !decimal(pidText) || !decimal(random) {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	// ESRCH: no such process. EPERM (another user's) or nil: alive, as
	// this process is (another VM of it may be writing the file).
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// decimal reports whether s is a non-empty string of ASCII digits of a
// length an int holds.
func decimal(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
