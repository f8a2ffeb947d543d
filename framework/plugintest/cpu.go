package plugintest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helpers below let a benchmark charge CPU to each process of a
// migration: this one (the engines) and each plugin process it launched.
// They read /proc, so they see only what the kernel accounts per process;
// a process's CPU time is in clock ticks (10 ms), so measure long enough.

// SelfCPU is this process's user and system time so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPU is process pid's user and system time so far (/proc/pid/stat
// fields 14 and 15); it fails t if pid is gone.
func CPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// Children is the set of this process's live children whose command
// name (/proc/pid/stat's, at most 15 bytes) starts with prefix: e.g.
// "ferry-transpor" for transport plugins.
func Children(prefix string) map[int]bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := map[int]bool{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || !bytes.Contains(b[:i], []byte("("+prefix)) {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); err != nil || ppid != os.Getpid() {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		out[pid] = true
	}
	return out
}

// NewChild is the one pid of after that is not in before (Children
// taken around the start of one plugin); it fails t unless there is
// exactly one.
func NewChild(t testing.TB, before, after map[int]bool) int {
	t.Helper()
	var pids []int
	for p := range after {
		if !before[p] {
			pids = append(pids, p)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("want one new plugin process, found %v", pids)
	}
	return pids[0]
}
