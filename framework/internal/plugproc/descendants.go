package plugproc

import (
	"fmt"
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
//	Kill ─► note descendants (/proc/PID/task/*/children, recursively,
//	        each with its start time) ─► go-plugin's Kill ─► SIGKILL each
//	        noted process whose start time is unchanged (not a reused pid)
//
// What it cannot end: a process started after the note, and the
// children of a plugin that died on its own before Kill (both need the
// kernel's help: a cgroup). The plugin stays in the VMM's process group,
// so signals to that group (a terminal's, or a test harness stopping a
// VMM with its plugins) still reach it.

// proc is a process and its start time (clock ticks since boot).
type proc struct {
	pid   int
	start uint64
}

// descendants returns the processes below pid, at most maxDescendants.
func descendants(pid int) []proc {
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 && len(out) < maxDescendants {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children(p) {
			if st, ok := startTime(c); ok {
				out = append(out, proc{pid: c, start: st})
				queue = append(queue, c)
			}
		}
	}
	return out
}

// maxDescendants bounds the processes Kill notes.
const maxDescendants = 4096

// children lists pid's children from /proc/PID/task/*/children.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// startTime reads field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(b), ')') // comm may hold spaces
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:])) // from field 3 (state) on
	if len(f) < 20 {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, err == nil
}

// killNoted kills each noted process that is still the one noted.
func killNoted(ps []proc) {
	for _, p := range ps {
		if st, ok := startTime(p.pid); ok && st == p.start {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}
