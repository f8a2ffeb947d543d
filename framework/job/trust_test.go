//go:build linux

package job

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openTempDir is a t.TempDir() that every user may search, as are the
// directories above it (the go command makes the first 0700, which
// would hide everything below from other users).
func openTempDir(t *testing.T) string {
	dir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	must(t, os.Chmod(dir, 0o755))
	return dir
}

// TestCheckPluginFile: a plugin binary that someone else could replace
// (the file, or a directory above it, writable by every user, by a
// foreign group, or owned by another user) is refused, naming the path,
// its mode and owner; one only its user (and root) can write passes, in
// a sticky directory like /tmp too, and through a symbolic link only if
// both chains pass. Below a directory nobody else may search, modes
// do not matter (a umask of 0 leaves go's build outputs and
// t.TempDir()'s directories writable by every user there).
func TestCheckPluginFile(t *testing.T) {
	mk := func(t *testing.T, dirMode, fileMode os.FileMode) (dir, bin string) {
		dir = filepath.Join(openTempDir(t), "plugins")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "ferry-transport-x")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bin, fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		return dir, bin
	}
	for _, c := range []struct {
		name         string
		dir, file    os.FileMode
		chownFileUID int // -1: leave
		chownDirGID  int // -1: leave
		want         string
	}{
		{"private", 0o755, 0o755, -1, -1, ""},
		{"group-writable, own group", 0o775, 0o775, -1, -1, ""},
		{"sticky world-writable directory", 0o777 | os.ModeSticky, 0o755, -1, -1, ""},
		{"world-writable binary", 0o755, 0o757, -1, -1, "(-rwxr-xrwx, owner uid "},
		{"world-writable directory", 0o777, 0o755, -1, -1, "writable by every user, who could replace it: chmod o-w"},
		{"world-writable binary in a private directory", 0o700, 0o777, -1, -1, ""},
		{"world-writable binary in a directory only the own group may search", 0o750, 0o777, -1, -1, ""},
		{"directory writable by a foreign group", 0o775, 0o755, -1, 4242, "writable by group 4242"},
		{"binary of another user", 0o755, 0o755, 4242, -1, "owner uid 4242, group "},
		{"binary of another user in a private directory", 0o700, 0o755, 4242, -1, "belongs to neither this user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, bin := mk(t, c.dir, c.file)
			if c.chownFileUID >= 0 || c.chownDirGID >= 0 {
				if os.Getuid() != 0 {
					t.Skip("SKIPPED: chown needs root")
				}
				if c.chownFileUID >= 0 {
					must(t, os.Chown(bin, c.chownFileUID, -1))
				}
				if c.chownDirGID >= 0 {
					must(t, os.Chown(dir, -1, c.chownDirGID))
					must(t, os.Chmod(dir, c.dir)) // chown clears nothing on a directory, but keep the mode exact
				}
			}
			err := CheckPluginFile(bin)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	t.Run("world-writable directory below a private one", func(t *testing.T) {
		dir, bin := mk(t, 0o777, 0o777)
		must(t, os.Chmod(filepath.Dir(dir), 0o700))
		must(t, CheckPluginFile(bin))
	})
	t.Run("symbolic link into a world-writable directory", func(t *testing.T) {
		_, bin := mk(t, 0o777, 0o755)
		link := filepath.Join(t.TempDir(), "ferry-transport-x")
		must(t, os.Symlink(bin, link))
		if err := CheckPluginFile(link); err == nil || !strings.Contains(err.Error(), "writable by every user") {
			t.Fatalf("got %v", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
