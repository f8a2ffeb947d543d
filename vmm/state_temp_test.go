package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envAbandonSave makes TestStateSaveRemovesDeadWritersFiles's child
// write the state file it names and wait for ever before the rename.
const envAbandonSave = "FERRY_VMM_TEST_ABANDON_SAVE"

// abandonReady is what that child prints once its temporary file is
// written.
const abandonReady = "state-save child: the temporary file is written; waiting before the rename"

// TestStateSaveRemovesDeadWritersFiles: two writers (child processes,
// as VMMs) wrote a state file's temporary file and wait before the
// rename; one is killed there, as a VMM that exits with its write
// abandoned. The next state-save to that path removes the dead writer's
// temporary file and leaves the live one's, and everything else: files
// of another path, of another writer tag (another host or pid
// namespace, where the pid means something else), names that are not
// such files, a directory. Before, nothing removed a temporary file
// whose writer was gone: it stayed for good.
func TestStateSaveRemovesDeadWritersFiles(t *testing.T) {
	if path := os.Getenv(envAbandonSave); path != "" {
		writeFileAtomic(path, []byte("never committed"), func() bool {
			fmt.Println(abandonReady)
			select {}
		})
		return
	}
	tag := writerTag()
	if tag == "" {
		t.Skip("no boot id or pid namespace here to name temporary files after")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	dead, live := abandonedWriter(t, path), abandonedWriter(t, path)
	dead.Process.Kill()
	dead.Wait() // reaped: its pid names no process
	deadPID, livePID := strconv.Itoa(dead.Process.Pid), strconv.Itoa(live.Process.Pid)
	temps := tempsOf(t, path, tag)
	if len(temps[deadPID]) != 1 || len(temps[livePID]) != 1 {
		t.Fatalf("temporary files by pid: %q; want one of the dead writer %s and one of the live writer %s", temps, deadPID, livePID)
	}
	keep := []string{
		tempPrefix(filepath.Join(dir, "other"), tag) + deadPID + "-1", // another path
		tempPrefix(path, "0123456789abcdef") + deadPID + "-1",         // another writer tag
		tempPrefix(path, tag) + deadPID + "-1x",                       // not a temporary file's name
		tempPrefix(path, "") + "123",                                  // no tag: written before tags, or where there are none
	}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keepDir := tempPrefix(path, tag) + deadPID + "-2"
	if err := os.Mkdir(filepath.Join(dir, keepDir), 0o700); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, keepDir, temps[livePID][0])

	v := fakeVM(StatePaused)
	if _, err := saveWithin(t, v, 5*time.Second, path, func() {}); err != nil {
		t.Fatalf("state-save: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, temps[deadPID][0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead writer's temporary file %s is still there (%v)", temps[deadPID][0], err)
	}
	for _, name := range keep {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "state blob" {
		t.Errorf("%s holds %q, %v; want the saved state", path, b, err)
	}
}

// abandonedWriter starts a child that writes path's state and waits
// before the rename, and returns once its temporary file is written.
// The test's cleanup kills it.
func abandonedWriter(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateSaveRemovesDeadWritersFiles$", "-test.count=1")
	cmd.Env = append(os.Environ(), envAbandonSave+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // an error once it was killed
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == abandonReady {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the writer child ended before it wrote its temporary file")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writer child had not written its temporary file after 30 s")
	}
	return cmd
}

// tempsOf lists path's temporary files of writer tag tag by the pid in
// their names.
func tempsOf(t *testing.T, path, tag string) map[string][]string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	temps := map[string][]string{}
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), tempPrefix(path, tag)); ok {
			pid, _, _ := strings.Cut(rest, "-")
			temps[pid] = append(temps[pid], e.Name())
		}
	}
	return temps
}
