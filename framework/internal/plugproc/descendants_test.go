package plugproc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeProc writes a procfs tree into a temporary directory and points
// procDir at it for the test: per pid its comm, ppid, start time, and
// per task the children file's text.
func fakeProc(t *testing.T, procs map[int]fakeProcess) {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, fmt.Sprint(pid))
		state := p.state
		if state == "" {
			state = "S"
		}
		stat := fmt.Sprintf("%d (%s) %s %d %s %d 0 0\n", pid, p.comm, state, p.ppid, strings.Repeat("0 ", 17), p.start)
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644))
		for tid, kids := range p.tasks {
			td := filepath.Join(d, "task", fmt.Sprint(tid))
			must(t, os.MkdirAll(td, 0o755))
			must(t, os.WriteFile(filepath.Join(td, "children"), []byte(kids), 0o644))
		}
	}
	old := procDir
	procDir = dir
	t.Cleanup(func() { procDir = old })
}

type fakeProcess struct {
	comm  string
	state string // field 3; "" is "S"
	ppid  int
	start uint64
	tasks map[int]string // tid: its children file
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDescendants: what Kill notes in a process tree read from procfs.
// A child whose parent is no longer the process it was listed under
// (it exited after the listing and its pid went to a stranger) is not
// noted, nor anything below it; garbage and pids 0 and below in a
// children file are skipped (a SIGKILL to 0 or -1 would reach the VMM's
// group or every process); a root whose start time changed (the plugin
// exited and its pid was reused) notes nothing.
func TestDescendants(t *testing.T) {
	tree := map[int]fakeProcess{
		100: {comm: "ferry-hint-x", ppid: 1, start: 5000,
			tasks: map[int]string{100: "101 102 0 -1 junk\n", 105: "103"}},
		101: {comm: "sh", ppid: 100, start: 5001, tasks: map[int]string{101: "104"}},
		102: {comm: "stranger", ppid: 999, start: 7000, tasks: map[int]string{102: "110"}},
		103: {comm: "a) b (c", ppid: 100, start: 5003},
		104: {comm: "sleep", ppid: 101, start: 5004, tasks: map[int]string{104: "100"}},
		110: {comm: "stranger's", ppid: 102, start: 7001},
	}
	fakeProc(t, tree)
	got := descendants(proc{pid: 100, start: 5000})
	want := []proc{{101, 5001}, {103, 5003}, {104, 5004}}
	if !slices.Equal(got, want) {
		t.Errorf("descendants = %v, want %v", got, want)
	}
	for _, root := range []proc{{100, 4999}, {100, 0}, {200, 5000}, {0, 0}, {-1, 0}} {
		if got := descendants(root); len(got) != 0 {
			t.Errorf("descendants(%v) = %v, want none: the pid is not the plugin noted", root, got)
		}
	}
}

// TestStopped: a process counts as stopped in a signal's stop ('T') or
// a tracer's ('t'), and only while its pid is still the one noted (same
// start time); a sleeping, running or zombie process, a garbled state,
// or a pid that is gone or reused does not.
func TestStopped(t *testing.T) {
	fakeProc(t, map[int]fakeProcess{
		10: {comm: "T (x", state: "T", ppid: 1, start: 100},
		11: {comm: "traced", state: "t", ppid: 1, start: 101},
		12: {comm: "sleeping", state: "S", ppid: 1, start: 102},
		13: {comm: "running", state: "R", ppid: 1, start: 103},
		14: {comm: "zombie", state: "Z", ppid: 1, start: 104},
		15: {comm: "garbled", state: "TT", ppid: 1, start: 105},
	})
	for _, tc := range []struct {
		p    proc
		want bool
	}{
		{proc{10, 100}, true}, {proc{11, 101}, true},
		{proc{12, 102}, false}, {proc{13, 103}, false}, {proc{14, 104}, false}, {proc{15, 105}, false},
		{proc{10, 99}, false}, {proc{10, 0}, false}, {proc{16, 100}, false}, {proc{0, 0}, false},
	} {
		if got := tc.p.stopped(); got != tc.want {
			t.Errorf("stopped(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}
