//go:build linux

package guest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// guestELF is bin/guest.elf at the repository root, seen from this package.
const guestELF = "../../bin/guest.elf"

var (
	tickRE   = regexp.MustCompile(`^tick \d+ live=\d+ free=\d+ verify=ok$`)
	udRE     = regexp.MustCompile(`^exception vector=6 \(#UD\) rip=0x[0-9a-f]+ cr2=0x[0-9a-f]+ err=0x[0-9a-f]+`)
	pfRE     = regexp.MustCompile(`^exception vector=14 \(#PF\) rip=0x[0-9a-f]+ cr2=0x7dead000bad0 err=0x[0-9a-f]+`)
	failRE   = regexp.MustCompile(`verify=FAIL|^exception |^fatal: |^balloon: ASSERT`)
	verifyRE = regexp.MustCompile(`^verify=FAIL addr=0x[0-9a-f]+ want=0x[0-9a-f]+ got=0x[0-9a-f]+ `)
	assertRE = regexp.MustCompile(`^balloon: ASSERT write of 0x[0-9a-f]+ \(order 0\) inside hinted block 0x[0-9a-f]+ before DONE$`)
	hogRE    = regexp.MustCompile(`^hog: touched 256 MiB in \d+ ms \(\d+ MB/s\)$`)
	readyRE  = regexp.MustCompile(`^ready$`)
)

// QEMU's isa-debug-exit turns the guest's exit code v into status (v<<1)|1.
const (
	qemuStatusOK     = 0<<1 | 1
	qemuStatusVerify = 2<<1 | 1
	qemuStatusFault  = 3<<1 | 1
)

// needQEMU skips the test, saying exactly what did not run and why, unless
// the guest ELF, qemu-system-x86_64 and a usable /dev/kvm are all present.
func needQEMU(t *testing.T, what string) (elf, qemu string) {
	t.Helper()
	var missing []string
	elf, _ = filepath.Abs(guestELF)
	if _, err := os.Stat(elf); err != nil {
		missing = append(missing, fmt.Sprintf("%s (run `make bin/guest.elf` at the repository root)", elf))
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing = append(missing, "qemu-system-x86_64 in PATH (Debian: apt-get install qemu-system-x86)")
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		missing = append(missing, fmt.Sprintf("a usable /dev/kvm (%v)", err))
	} else {
		f.Close()
	}
	if len(missing) > 0 {
		t.Skipf("SKIPPED, DID NOT RUN: %s under QEMU; missing: %s", what, strings.Join(missing, "; "))
	}
	return elf, qemu
}

// qemuRun is one QEMU process with the guest's serial output as lines.
type qemuRun struct {
	cmd   *exec.Cmd
	lines chan string // closed when QEMU's stdout ends
	done  chan struct{}
	mu    sync.Mutex
	log   []string
	err   error // from Wait, valid after done
}

// startQEMU boots the guest with cmdline in a 1 GiB microvm, with extra
// QEMU arguments appended. QEMU runs in its own process group, killed when
// ctx ends or the test finishes.
func startQEMU(t *testing.T, ctx context.Context, elf, qemu, cmdline string, extra ...string) *qemuRun {
	t.Helper()
	r := &qemuRun{lines: make(chan string, 1024), done: make(chan struct{})}
	args := append([]string{
		"-accel", "kvm", "-machine", "microvm,acpi=off", "-m", "1G",
		"-kernel", elf, "-append", cmdline,
		"-nodefaults", "-no-reboot", "-serial", "stdio", "-display", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}, extra...)
	r.cmd = exec.CommandContext(ctx, qemu, args...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.Cancel = func() error { return syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) }
	r.cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	r.cmd.Stderr = &stderr
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.log = append(r.log, sc.Text())
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default: // a test that stopped reading never blocks QEMU
			}
		}
		close(r.lines)
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		if t.Failed() {
			r.mu.Lock()
			t.Logf("guest serial output:\n%s\nqemu stderr:\n%s", strings.Join(r.log, "\n"), stderr.String())
			r.mu.Unlock()
		}
	})
	return r
}

// output returns the serial lines seen so far.
func (r *qemuRun) output() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// next returns the next serial line, or fails the test when the output
// ends or ctx expires first.
func (r *qemuRun) next(t *testing.T, ctx context.Context, waitingFor string) string {
	t.Helper()
	select {
	case line, ok := <-r.lines:
		if !ok {
			<-r.done
			t.Fatalf("QEMU exited (%v) while waiting for %s", r.err, waitingFor)
		}
		return line
	case <-ctx.Done():
		t.Fatalf("no %s within the deadline: %v", waitingFor, ctx.Err())
	}
	return ""
}

// exitStatus waits for QEMU to end on its own and returns its status.
func (r *qemuRun) exitStatus(t *testing.T, ctx context.Context) int {
	t.Helper()
	for range r.lines {
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		t.Fatalf("QEMU still running at the deadline: %v", ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		return ee.ExitCode()
	}
	if r.err != nil {
		t.Fatalf("QEMU: %v", r.err)
	}
	return 0
}

// TestQEMUHogTicks boots the guest with the 2016 "finished hog" workload and
// waits for three ticks whose verification passed.
func TestQEMUHogTicks(t *testing.T) {
	elf, qemu := needQEMU(t, "TestQEMUHogTicks (boot bin/guest.elf with workload=hog:256, expect 3 verify=ok ticks)")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := startQEMU(t, ctx, elf, qemu, "workload=hog:256")
	var hog, ready bool
	for ticks := 0; ticks < 3; {
		line := r.next(t, ctx, "three verify=ok ticks")
		switch {
		case failRE.MatchString(line):
			t.Fatalf("guest reported a failure: %s", line)
		case hogRE.MatchString(line):
			hog = true
		case readyRE.MatchString(line):
			ready = true
		case tickRE.MatchString(line):
			if !hog || !ready {
				t.Fatalf("tick before the hog report and ready (hog=%v ready=%v): %s", hog, ready, line)
			}
			ticks++
		}
	}
}

// TestQEMUCrash boots guests that fail on purpose and checks the report and
// QEMU's exit status (crash:hint writes to a block held for a free page
// hint, which the allocator must catch); the last case is the clean
// power-off of exit_after after the guest's self-test.
func TestQEMUCrash(t *testing.T) {
	elf, qemu := needQEMU(t, "TestQEMUCrash (crash:ud, crash:pf, crash:verify, crash:hint, selftest exit_after=1 under QEMU)")
	for _, tc := range []struct {
		cmdline string
		want    *regexp.Regexp
		status  int
	}{
		{"workload=crash:ud", udRE, qemuStatusFault},
		{"workload=crash:pf", pfRE, qemuStatusFault},
		{"workload=crash:verify", verifyRE, qemuStatusVerify},
		{"workload=crash:hint", assertRE, qemuStatusVerify},
		{"selftest workload=kv:16 exit_after=1", regexp.MustCompile(`^exit_after=1: verify=ok, powering off$`), qemuStatusOK},
	} {
		t.Run(tc.cmdline, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := startQEMU(t, ctx, elf, qemu, tc.cmdline)
			for {
				line := r.next(t, ctx, fmt.Sprintf("a line matching %q", tc.want))
				if tc.want.MatchString(line) {
					break
				}
				if failRE.MatchString(line) {
					t.Fatalf("unexpected failure report: %s", line)
				}
			}
			if got := r.exitStatus(t, ctx); got != tc.status {
				t.Errorf("QEMU exit status %d, want %d", got, tc.status)
			}
		})
	}
}
