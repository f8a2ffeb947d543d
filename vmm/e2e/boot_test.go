package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/control"
)

// TestBootHogDirty boots a 1 GiB guest that runs a finished hog and keeps a
// dirty working set, checks its self-verification, and drives the control
// socket through status, pause, resume and quit.
func TestBootHogDirty(t *testing.T) {
	needKVM(t, "TestBootHogDirty (boot a 1 GiB guest with hog:512,dirty:64@32 on KVM)")
	_, guest := binaries(t)
	sock := filepath.Join(t.TempDir(), "vmm.sock")
	r := startVMM(t, "-kernel", guest, "-mem", "1G", "-control", sock,
		"-cmdline", "workload=hog:512,dirty:64@32")
	r.waitLine(regexp.MustCompile(`^hog: touched 512 MiB`), 60*time.Second)
	r.waitTicks(3, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st vmm.Status
	if err := control.Call(ctx, sock, "status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.State != vmm.StateRunning || st.MemoryBytes != 1<<30 || st.VCPUs != 1 || st.UptimeMS <= 0 {
		t.Errorf("status = %+v", st)
	}
	if err := control.Call(ctx, sock, "pause", nil, &st); err != nil || st.State != vmm.StatePaused {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	// While paused the guest prints nothing new. Lines already in flight
	// are let in first: the output must stand still for 200 ms (a loaded
	// machine may hold the reader longer than a fixed wait allowed).
	before := len(r.output())
	for still, deadline := time.Now(), time.Now().Add(10*time.Second); time.Since(still) < 200*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if n := len(r.output()); n != before {
			before, still = n, time.Now()
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if after := len(r.output()); after != before {
		t.Errorf("guest printed while paused:\n%s", r.output()[before:])
	}
	if err := control.Call(ctx, sock, "resume", nil, &st); err != nil || st.State != vmm.StateRunning {
		t.Fatalf("resume: %+v, %v", st, err)
	}
	r.waitTicks(2, 30*time.Second)
	if err := control.Call(ctx, sock, "quit", nil, &st); err != nil {
		t.Fatal(err)
	}
	go r.drain()
	if code := r.exitCode(30 * time.Second); code != 0 {
		t.Errorf("exit code after quit = %d, want 0", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestGuestExitCode checks that the guest's power-off code becomes the
// VMM's exit status.
func TestGuestExitCode(t *testing.T) {
	needKVM(t, "TestGuestExitCode (guest power-off through port 0xf4)")
	_, guest := binaries(t)
	r := startVMM(t, "-kernel", guest, "-mem", "256M", "-cmdline", "workload=idle exit_after=1")
	go r.drain()
	if code := r.exitCode(60 * time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// TestGuestCrash boots guests that fault on purpose: the guest's exception
// handler reports the vector, RIP and CR2, and the VMM exits non-zero.
func TestGuestCrash(t *testing.T) {
	needKVM(t, "TestGuestCrash (crash:ud and crash:pf exception reports)")
	_, guest := binaries(t)
	for _, tc := range []struct{ workload, want string }{
		{"crash:ud", `exception vector=6 \(#UD\) rip=0x[0-9a-f]+`},
		{"crash:pf", `exception vector=14 \(#PF\) rip=0x[0-9a-f]+ cr2=0x[0-9a-f]+`},
	} {
		t.Run(tc.workload, func(t *testing.T) {
			r := startVMM(t, "-kernel", guest, "-mem", "256M", "-cmdline", "workload="+tc.workload)
			r.waitLine(regexp.MustCompile(tc.want), 60*time.Second)
			go r.drain()
			if code := r.exitCode(30 * time.Second); code == 0 {
				t.Errorf("%s: exit code 0, want failure", tc.workload)
			}
		})
	}
}

// TestBadInput checks that every kind of bad invocation ends with a clear
// message and a non-zero status, never a panic.
func TestBadInput(t *testing.T) {
	_, guest := binaries(t)
	dir := t.TempDir()
	notELF := filepath.Join(dir, "not.elf")
	os.WriteFile(notELF, []byte("#!/bin/sh\necho hello\n"), 0o644)
	noNote := filepath.Join(dir, "nonote.elf")
	os.WriteFile(noNote, elfWithoutNote(), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "-kernel and -mem are required"},
		{"missing kernel", []string{"-kernel", filepath.Join(dir, "nope"), "-mem", "1G"}, "no such file"},
		{"not ELF", []string{"-kernel", notELF, "-mem", "1G"}, "not an ELF"},
		{"no PVH note", []string{"-kernel", noNote, "-mem", "1G"}, "PVH"},
		{"bad size", []string{"-kernel", guest, "-mem", "lots"}, "bad size"},
		{"tiny size", []string{"-kernel", guest, "-mem", "1M"}, "too small"},
		{"more than host", []string{"-kernel", guest, "-mem", "900G"}, "more than this host has"},
		{"bad cpus", []string{"-kernel", guest, "-mem", "1G", "-cpus", "0"}, "vCPU count"},
		{"stray arg", []string{"-kernel", guest, "-mem", "1G", "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startVMM(t, tc.args...)
			go r.drain()
			code := r.exitCode(30 * time.Second)
			stderr := r.errors()
			if code == 0 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "goroutine ") {
				t.Errorf("exit %d, stderr:\n%s\nwant non-zero and %q, no panic", code, stderr, tc.want)
			}
		})
	}
}
