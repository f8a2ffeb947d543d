package vmm

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests that mount a file system that never answers (hungFS) run
// in a child process of this test binary, in a mount namespace of its
// own:
//
//	go test ─ TestStateSaveHungFS ─ inPrivateMounts ─ exec (CLONE_NEWNS, Pdeathsig) ─► child: the same test
//	                                   waits, relays its result                          hungFS: mount, use, unmount
//
// The mount is then seen by that child alone, and goes with its
// namespace when the child ends, however it ends: a test timeout or a
// crash, which run no cleanup, or a kill (it is killed when this process
// dies). Before, the mount was made in the host's namespace under /tmp:
// a test binary that timed out or crashed while it was there left it
// mounted for good (its daemon's descriptor closed, every access
// failing), and while it lasted anything on the host that walked /tmp
// (a find, a du, another test) hung in it (TestHungFSLeavesNoMount).

// envPrivateMounts names, in a child's environment, the test it runs
// in its own mount namespace (inPrivateMounts).
const envPrivateMounts = "FERRY_VMM_TEST_PRIVATE_MOUNTS"

// envHungFSDies makes hungFS kill its process right after it mounted,
// as a test timeout or a crash ends it: without a cleanup
// (TestHungFSLeavesNoMount).
const envHungFSDies = "FERRY_VMM_TEST_HUNGFS_DIES"

// hungFSDying is what hungFS prints before it kills its process.
const hungFSDying = "hungFS: mounted; this process dies now, without its cleanups"

// inPrivateMounts reports whether the calling test runs in a mount
// namespace of its own, in a child process: there it returns true and
// the test goes on. Elsewhere it runs the test again in such a child
// (its temporary directories under this test's), waits for it and
// passes on its result (skipped, failed with its output, or passed),
// and returns false: the test returns. It skips where no namespace can
// be made (no CAP_SYS_ADMIN).
func inPrivateMounts(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envPrivateMounts) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envPrivateMounts+"="+t.Name(), "TMPDIR="+t.TempDir())
	// Pdeathsig is sent when the thread that started the child ends:
	// keep this goroutine on it until the child is waited for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	var ee *exec.ExitError
	switch {
	case err != nil && !errors.As(err, &ee):
		t.Skipf("cannot run %s in a mount namespace of its own here: %v", t.Name(), err)
	case err != nil:
		t.Fatalf("%s in its own mount namespace: %v; its output:\n%s", t.Name(), err, out)
	case strings.Contains(string(out), "--- SKIP: "+t.Name()):
		t.Skipf("%s in its own mount namespace skipped:\n%s", t.Name(), out)
	}
	t.Logf("%s passed in its own mount namespace", t.Name())
	return false
}

// TestHungFSLeavesNoMount: TestStateSaveHungFS's process, killed while
// its file system that never answers is mounted (as a test timeout or
// a crash ends it, without its cleanups), leaves no mount behind. Before,
// that file system stayed mounted under the host's /tmp.
func TestHungFSLeavesNoMount(t *testing.T) {
	tmp := t.TempDir()
	t.Cleanup(func() { // a mount this test finds is not left behind either
		for _, m := range mountsUnder(t, tmp) {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateSaveHungFS$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envHungFSDies+"=1", "TMPDIR="+tmp)
	out, _ := cmd.CombinedOutput() // it fails: killed
	switch {
	case strings.Contains(string(out), "--- SKIP: TestStateSaveHungFS"):
		t.Skipf("TestStateSaveHungFS skipped:\n%s", out)
	case !strings.Contains(string(out), hungFSDying):
		t.Fatalf("TestStateSaveHungFS's process was not killed with its file system mounted; its output:\n%s", out)
	}
	if ms := mountsUnder(t, tmp); len(ms) > 0 {
		t.Errorf("TestStateSaveHungFS's process, killed, left %q mounted", ms)
	}
}

// mountsUnder lists the mount points of this process's mount namespace
// under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mount ID, parent ID, major:minor, root, mount point, ... (proc(5))
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && strings.HasPrefix(fs[4], dir+string(filepath.Separator)) {
			ms = append(ms, fs[4])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ms
}
