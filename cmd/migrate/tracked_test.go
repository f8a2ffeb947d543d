package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoBuiltBinaryTracked: `go build` in a command's directory writes
// its binary there (cmd/migrate/migrate), and at the repository's root
// it writes /migrate or /ferry-vmm. Such a binary (22 MB) was committed
// three times (d517e61, 919380e and 8eb25ec removed or added them), so
// every one of those paths is ignored, and no tracked file is an ELF
// executable. It skips outside a git checkout (a module copy has no
// .git).
func TestNoBuiltBinaryTracked(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git:", err)
	}
	root, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git checkout:", err)
	}
	top := strings.TrimSpace(string(root))
	cmds, err := os.ReadDir(filepath.Join(top, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	built := []string{"migrate", "ferry-vmm"} // at the root
	for _, c := range cmds {
		if c.IsDir() {
			built = append(built, filepath.Join("cmd", c.Name(), c.Name()))
		}
	}
	for _, p := range built {
		// --no-index: ignored whether or not it is tracked now.
		if out, err := exec.Command(git, "-C", top, "check-ignore", "-q", "--no-index", p).CombinedOutput(); err != nil {
			t.Errorf("%s, where go build writes a binary, is not ignored (.gitignore): %v %s", p, err, out)
		}
	}
	out, err := exec.Command(git, "-C", top, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, p := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if p == "" {
			continue
		}
		if isELF(t, filepath.Join(top, p)) {
			t.Errorf("%s is tracked and is an ELF binary: git rm --cached it (build output does not belong in the repository)", p)
		}
	}
}

// isELF reports whether the file at p starts with ELF's magic. A path
// that is not a regular file (removed in the work tree, a symlink, a
// submodule) is not one.
func isELF(t *testing.T, p string) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(p)
	if err != nil {
		t.Errorf("open %s: %v", p, err)
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return false // shorter than the magic
	}
	return bytes.Equal(magic, []byte("\x7fELF"))
}
