package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// childEnv names the mode in which this test binary runs as the process
// that TestSignalsEndProcess signals (TestMain).
const childEnv = "FERRY_VMM_SIGNALS_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		signalsChild(mode)
		os.Exit(0) // survived
	}
	os.Exit(m.Run())
}

// fakeVM is a VM as handleSignals sees it, without KVM: it says on
// stdout when it serves, and, in mode "insist", takes a first signal as
// a shutdown that waits ("deferred") and gives the second back, as
// vmm.VM.ServeShutdowns does; in mode "stopped" its VM has stopped.
type fakeVM struct{ mode string }

func (f fakeVM) ServeShutdowns(reqs <-chan os.Signal) os.Signal {
	if f.mode == "stopped" {
		return nil
	}
	fmt.Println("serving")
	<-reqs
	fmt.Println("deferred")
	return <-reqs
}

// signalsChild runs handleSignals against a fakeVM, then says "exiting"
// and waits on stdin (as run's caller closes the VM) until it ends.
func signalsChild(mode string) {
	handleSignals(fakeVM{mode})()
	fmt.Println("exiting")
	io.Copy(io.Discard, os.Stdin)
}

// TestSignalsEndProcess: the signal the VM gives back (one while a
// shutdown waits: vmm TestServeShutdownsInsist) ends ferry-vmm's process
// at once, of that signal; and once the VM stopped, a signal ends the
// process while it exits. The process is this test binary in a child
// mode (TestMain): the real VM needs /dev/kvm; the VM's side is tested
// in package vmm (TestShutdownRearmsAfterCancel).
func TestSignalsEndProcess(t *testing.T) {
	for _, c := range []struct {
		name, mode string
		lines      []string         // what the child says before each signal
		sigs       []syscall.Signal // sent after each line; the child must die of the last
	}{
		{"insist", "insist", []string{"serving", "deferred"}, []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}},
		{"stopped", "stopped", []string{"exiting"}, []syscall.Signal{syscall.SIGTERM}},
		// A hang-up (the terminal or ssh session that started it closed)
		// is a shutdown like the others, deferred as they are: before, its
		// default action killed the VMM at once, in post-copy too.
		{"hangup", "insist", []string{"serving", "deferred"}, []syscall.Signal{syscall.SIGHUP, syscall.SIGHUP}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), childEnv+"="+c.mode)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(out)
			for i, want := range c.lines {
				if !lines.Scan() || lines.Text() != want {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child said %q (%v), want %q", lines.Text(), lines.Err(), want)
				}
				if err := cmd.Process.Signal(c.sigs[i]); err != nil {
					t.Fatal(err)
				}
			}
			for lines.Scan() {
				t.Errorf("child said %q after its last signal", lines.Text())
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			last := c.sigs[len(c.sigs)-1]
			if !errors.As(err, &ee) {
				t.Fatalf("child: %v, want it killed by %v", err, last)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if ctx.Err() != nil || !ws.Signaled() || ws.Signal() != last {
				t.Errorf("child ended %v (timed out: %v), want killed by %v", err, ctx.Err() != nil, last)
			}
		})
	}
}
