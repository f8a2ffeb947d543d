package plugintest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// dir holds the links Main makes to the test binary.
var dir string

// Main is a TestMain for a test binary that doubles as other binaries
// (go-plugin's own examples re-execute the test binary the same way).
// Started under one of the names in roles, it runs that role and exits
// with its code: serving a plugin, or playing a host. Otherwise it links
// itself under every name in a fresh temporary directory (Dir), runs the
// tests, removes the directory and exits.
//
//	func TestMain(m *testing.M) {
//		plugintest.Main(m, map[string]func() int{
//			"ferry-hint-zero": func() int { hint.Serve(newZero()); return 0 },
//		})
//	}
func Main(m *testing.M, roles map[string]func() int) {
	if role, ok := roles[filepath.Base(os.Args[0])]; ok {
		os.Exit(role())
	}
	os.Exit(run(m, roles))
}

func run(m *testing.M, roles map[string]func() int) int {
	exe, err := os.Executable()
	if err == nil {
		dir, err = os.MkdirTemp("", "ferry-test-plugins")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for name := range roles {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// Dir is the directory holding the test binary under every role's name;
// "" unless Main runs the tests.
func Dir() string { return dir }

// Path is the path of the test binary under the role called name.
func Path(t testing.TB, name string) string {
	t.Helper()
	if dir == "" {
		t.Fatal("plugintest.Path needs plugintest.Main in the package's TestMain")
	}
	return filepath.Join(dir, name)
}
