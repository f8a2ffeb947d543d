package plugproc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A plugin may start processes of its own (a tool it shells out to, or
// something it leaves behind on purpose). They are in the VMM's process
// group and the plugin's tree, and nothing ends them with the plugin:
// go-plugin asks the plugin to exit and kills it, and its children are
// adopted by init. Kill therefore notes the plugin's descendants first
// and kills those still there once the plugin is gone:
//
//	Start ─► the plugin's start time (before anyone reaps it: the pid is ours)
//	Kill ─► note descendants, if the pid is still the plugin (same start
//	        time, before and after the walk): /proc/PID/task/*/children,
//	        recursively, each child kept only if its parent is still the
//	        process it was listed under, with its start time
//	     ─► go-plugin's Kill ─► SIGKILL each noted process whose start
//	        time is unchanged (not a reused pid)
//
// A failed Start does the same (runner.go: go-plugin's kill through the
// runner, exec's context, and a plugin asked to exit). A plugin that
// exited on its own was reaped by go-plugin, so its pid may belong to
// anyone by Kill: its start time tells. Signals go to single pids above
// 0, never to a group.
//
// What it cannot end: a process started after the note, and the
// children of a plugin that died on its own before Kill (both need the
// kernel's help: a cgroup). The plugin stays in the VMM's process group,
// so signals to that group (a terminal's, or a test harness stopping a
// VMM with its plugins) still reach it.

// procDir is where procfs is mounted (tests use a fake tree).
var procDir = "/proc"

// proc is a process and its start time (clock ticks since boot).
type proc struct {
	pid   int
	start uint64
}

// descendants returns the processes below root, at most maxDescendants,
// or none if root's pid is no longer root (it exited; its pid may have
// been reused, and the children read would be a stranger's).
func descendants(root proc) []proc {
	if !root.same() {
		return nil
	}
	var out []proc
	queue := []int{root.pid}
	for len(queue) > 0 && len(out) < maxDescendants {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children(p) {
			// c's parent must still be p: a child listed, then gone, may
			// have had its pid reused by now.
			if ppid, st, ok := readStat(c); ok && ppid == p && len(out) < maxDescendants {
				out = append(out, proc{pid: c, start: st})
				queue = append(queue, c)
			}
		}
	}
	if !root.same() { // root exited during the walk: what was read may not be its
		return nil
	}
	return out
}

// same reports whether p's pid still is the process noted (its start time).
func (p proc) same() bool {
	_, st, ok := readStat(p.pid)
	return ok && p.start != 0 && st == p.start
}

// maxDescendants bounds the processes Kill notes.
const maxDescendants = 4096

// children lists pid's children from /proc/PID/task/*/children.
func children(pid int) []int {
	tasks, _ := filepath.Glob(filepath.Join(procDir, strconv.Itoa(pid), "task", "*", "children"))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil && c > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

// readStat reads fields 4 (ppid) and 22 (start time) of /proc/PID/stat.
func readStat(pid int) (ppid int, start uint64, ok bool) {
	_, ppid, start, ok = readStatState(pid)
	return ppid, start, ok
}

// readStatState is readStat with field 3, the state ('R', 'S', 'T'...).
func readStatState(pid int) (state byte, ppid int, start uint64, ok bool) {
	if pid <= 0 {
		return 0, 0, 0, false
	}
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	i := strings.LastIndexByte(string(b), ')') // comm may hold spaces and ')'
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+1:])) // from field 3 (state) on
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, 0, false
	}
	pp, err1 := strconv.Atoi(f[1])
	st, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return f[0][0], pp, st, true
}

// stopped reports whether p's pid still is the process noted and is
// stopped: by a signal (SIGSTOP, SIGTSTP: 'T') or in a tracer's stop
// ('t'). Such a process runs nothing, so it answers no call and cannot
// exit on its own until it is continued; SIGKILL still ends it at once.
func (p proc) stopped() bool {
	state, _, st, ok := readStatState(p.pid)
	return ok && p.start != 0 && st == p.start && (state == 'T' || state == 't')
}

// startTime is the start time of pid, if it runs (or is a zombie).
func startTime(pid int) (uint64, bool) {
	_, st, ok := readStat(pid)
	return st, ok
}

// killNoted kills each noted process that is still the one noted.
func killNoted(ps []proc) {
	for _, p := range ps {
		if p.pid > 0 && p.same() {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}
