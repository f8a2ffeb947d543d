package plugintest

import (
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildCommands builds this module's commands ./cmd/NAME, with cgo off,
// into dir (which must exist), for tests that need the real plugin
// binaries rather than the test binary doubling as one (Main). It runs
// the go tool found on PATH, else GOROOT's, from the module's root; what
// it cannot do is build a command that needs cgo.
func BuildCommands(dir string, names ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if err != nil || root == "." {
		return fmt.Errorf("find the module root with %s env GOMOD: %v", goBin, err)
	}
	args := []string{"build", "-o", dir + "/"}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", strings.Join(names, ", "), err, out)
	}
	return nil
}
