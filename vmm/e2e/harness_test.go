package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// repoRoot finds the directory holding go.mod above the test's directory.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// binaries returns bin/ferry-vmm and bin/guest.elf, failing when they were
// not built: `make test` builds them, so their absence is a real error.
func binaries(t testing.TB) (vmmBin, guest string) {
	root := repoRoot(t)
	vmmBin, guest = filepath.Join(root, "bin", "ferry-vmm"), filepath.Join(root, "bin", "guest.elf")
	for _, p := range []string{vmmBin, guest} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make` (or `make test`) first", p)
		}
	}
	return vmmBin, guest
}

// needKVM skips the test, loudly, when KVM cannot be used here.
func needKVM(t testing.TB, what string) {
	if err := kvm.Available(); err != nil {
		t.Skipf("SKIPPED (KVM unavailable): %s did not run: %v", what, err)
	}
}

// unprovenEnv turns on the end-to-end tests that were written on a machine
// without /dev/kvm and have not yet passed on real KVM (see needProven).
const unprovenEnv = "FERRY_E2E_UNPROVEN"

// needProven skips, loudly, a KVM test that has never passed on real KVM
// unless FERRY_E2E_UNPROVEN=1: it was written in a session whose machine
// had no /dev/kvm and only ran under an emulated (TCG) KVM, too slow for
// its timing. The first session with KVM runs it, fixes what fails and
// removes this call (issue 8).
func needProven(t testing.TB, what string) {
	needKVM(t, what)
	if os.Getenv(unprovenEnv) == "" {
		t.Skipf("SKIPPED (not yet proven on real KVM): %s did not run; run it with %s=1 and remove needProven once it passes", what, unprovenEnv)
	}
}

// timeScaleEnv stretches the bounds some tests put on waits that only
// guard against a hang (slow, never a figure the test asserts): a whole
// number, 1 to 100, for emulated KVM (vmm/e2e/tcg), where a plugin
// start or a pass takes tens of times as long. It stretches the balloon
// hint deadline of balloonHint's jobs too.
const timeScaleEnv = "FERRY_E2E_TIME_SCALE"

// slow is the hang guard d, stretched by FERRY_E2E_TIME_SCALE. The
// harness's waits (waitLine, waitTicks, freshTicks, exitCode,
// waitPhase, lineWriter.wait) stretch their bounds themselves; a test
// calls slow for its own contexts and deadlines, never for a figure it
// asserts (a handover's "ran again within", a fault's latency).
func slow(d time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv(timeScaleEnv)); err == nil && n > 1 {
		return d * time.Duration(min(n, 100))
	}
	return d
}

// streamEnv, set to 1, copies each ferry-vmm's and migrate's stderr to
// the test binary's stderr as it is written, each line prefixed with
// its process (streamed): under emulated KVM (vmm/e2e/tcg) a round that
// hangs is otherwise silent until its hang guard ends it, and a test
// binary's own timeout prints none of what the processes said.
const streamEnv = "FERRY_E2E_STREAM"

// vmmsStarted numbers the ferry-vmm processes a test binary started,
// for streamed's prefix.
var vmmsStarted atomic.Int64

// streamed is w, and with FERRY_E2E_STREAM=1 also os.Stderr with each
// line prefixed by name.
func streamed(w io.Writer, name string) io.Writer {
	if os.Getenv(streamEnv) != "1" {
		return w
	}
	return io.MultiWriter(w, &prefixWriter{prefix: name + ": "})
}

// prefixWriter writes whole lines to os.Stderr, each after prefix.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	part   []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		fmt.Fprintf(os.Stderr, "%s%s\n", w.prefix, w.part[:i])
		w.part = w.part[i+1:]
	}
}

// balloonHint is the job's balloon hint block with a deadline of
// slow(500ms). The deadline bounds how long the engine listens to the
// provider; under emulated KVM (vmm/e2e/tcg) the guest's hint session
// and the plugin's answer need several times the 500 ms a real KVM host
// needs, and with 500 ms there the provider missed its deadline and the
// test measured the emulator (TestMigrateWithBalloonHints sent the hog's
// pages at 1 MB/s). No test asserts the deadline itself.
func balloonHint() string {
	return fmt.Sprintf("hint \"balloon\" { deadline = %q }\n", slow(500*time.Millisecond).String())
}

// guestRun is a ferry-vmm process with its serial output split into lines.
type guestRun struct {
	t       testing.TB
	cmd     *exec.Cmd
	lines   chan string
	mu      sync.Mutex
	log     []string
	stderr  strings.Builder
	done    chan struct{}
	waitErr error
	control string
	// migrate is the migrate process running against this VMM while a
	// test acts during it (pair.during), for waitPhase: nil otherwise.
	migrate atomic.Pointer[exec.Cmd]
}

// exited reports whether cmd's process has exited and not yet been
// waited for (a zombie): cmd.Wait is still to come, so this reads
// /proc instead of reaping it.
func exited(cmd *exec.Cmd) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// during runs act while migrate (cmd) runs against src and dst, so that
// their waitPhase fails at once if migrate exits first.
func during(cmd *exec.Cmd, act func(*exec.Cmd), runs ...*guestRun) {
	if act == nil {
		return
	}
	for _, r := range runs {
		r.migrate.Store(cmd)
		defer r.migrate.Store(nil)
	}
	act(cmd)
}

// startVMM runs `ferry-vmm run` with args and collects its output.
func startVMM(t testing.TB, args ...string) *guestRun {
	vmmBin, _ := binaries(t)
	r := &guestRun{t: t, lines: make(chan string, 4096), done: make(chan struct{})}
	r.cmd = exec.Command(vmmBin, append([]string{"run"}, args...)...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.Stderr = streamed(&lockedWriter{mu: &r.mu, b: &r.stderr}, fmt.Sprintf("ferry-vmm#%d", vmmsStarted.Add(1)))
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.log = append(r.log, line)
			r.mu.Unlock()
			select {
			case r.lines <- line:
			default: // a test that stopped reading does not block the guest
			}
		}
		r.waitErr = r.cmd.Wait()
		close(r.lines)
		close(r.done)
	}()
	t.Cleanup(func() {
		var threads string
		if t.Failed() {
			threads = threadDump(r.cmd.Process.Pid)
		}
		r.kill()
		if t.Failed() {
			t.Logf("ferry-vmm serial output:\n%s\nstderr:\n%s\nthreads at the failure:\n%s", r.output(), r.errors(), threads)
		}
	})
	return r
}

// threadDump describes every thread of process pid from /proc: state,
// wait channel and, as root, the top of its kernel stack. It tells a
// guest stuck in KVM_RUN (a vCPU thread under kvm_arch_vcpu_ioctl_run)
// from a VMM blocked elsewhere, which the serial output cannot.
func threadDump(pid int) string {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return fmt.Sprintf("(process %d: no threads to show)", pid)
	}
	var b strings.Builder
	for _, task := range tasks {
		read := func(name string) string {
			data, _ := os.ReadFile(filepath.Join(task, name))
			return strings.TrimSpace(string(data))
		}
		state := ""
		for _, l := range strings.Split(read("status"), "\n") {
			if s, ok := strings.CutPrefix(l, "State:"); ok {
				state = strings.TrimSpace(s)
			}
		}
		fmt.Fprintf(&b, "tid %s %s, wchan %s\n", filepath.Base(task), state, read("wchan"))
		stack := strings.Split(read("stack"), "\n")
		for _, l := range stack[:min(len(stack), 8)] {
			if l != "" {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	}
	return b.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (r *guestRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "\n")
}

func (r *guestRun) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

func (r *guestRun) kill() {
	if r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-r.done
}

// waitLine returns the first line matching re within d (a hang guard,
// stretched by slow), failing otherwise.
func (r *guestRun) waitLine(re *regexp.Regexp, d time.Duration) []string {
	r.t.Helper()
	return r.waitLineWithin(re, slow(d))
}

// waitLineWithin is waitLine with d as given, not stretched.
func (r *guestRun) waitLineWithin(re *regexp.Regexp, d time.Duration) []string {
	r.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				r.t.Fatalf("ferry-vmm exited (%v) before printing a line matching %q", r.waitErr, re)
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timer.C:
			r.t.Fatalf("no line matching %q within %v", re, d)
		}
	}
}

// exitCode waits (up to d, stretched by slow) for the process and
// returns its exit status.
func (r *guestRun) exitCode(d time.Duration) int {
	r.t.Helper()
	d = slow(d)
	select {
	case <-r.done:
	case <-time.After(d):
		r.t.Fatalf("ferry-vmm still running after %v", d)
	}
	if r.waitErr == nil {
		return 0
	}
	if ee, ok := r.waitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	r.t.Fatalf("wait: %v", r.waitErr)
	return -1
}

// drain discards serial lines until the process exits.
func (r *guestRun) drain() {
	for range r.lines {
	}
}

var tickRE = regexp.MustCompile(`^tick (\d+) live=(\d+) free=(\d+) verify=(\S+)`)

// waitTicks waits for n ticks within d (stretched by slow), each
// verify=ok, failing on any other verdict.
func (r *guestRun) waitTicks(n int, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(slow(d))
	for i := 0; i < n; i++ {
		m := r.waitLineWithin(tickRE, time.Until(deadline))
		if m[4] != "ok" {
			r.t.Fatalf("guest verification failed: %s", strings.Join(m, " "))
		}
	}
}

func (r *guestRun) String() string { return fmt.Sprintf("ferry-vmm %v", r.cmd.Args) }

// TestThreadDump: the dump names every thread of a process, the main one
// (tid = pid) included, with its state; a process that is gone says so.
func TestThreadDump(t *testing.T) {
	d := threadDump(os.Getpid())
	if !strings.Contains(d, fmt.Sprintf("tid %d ", os.Getpid())) || !strings.Contains(d, ", wchan ") {
		t.Errorf("dump of this process:\n%s\nwant a line for tid %d with its wait channel", d, os.Getpid())
	}
	if d := threadDump(1 << 30); !strings.Contains(d, "no threads") {
		t.Errorf("dump of a process that does not exist: %q", d)
	}
}
