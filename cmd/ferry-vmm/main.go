// Command ferry-vmm is Ferry's reference KVM VMM.
//
//	ferry-vmm run -kernel FILE -mem SIZE [-cpus N] [-cmdline STR] [-serial FILE|-] [-control SOCK]
//	              [-log-level LEVEL] [-no-balloon] [-no-page-reporting] [-transport-in-process]
//	ferry-vmm run -incoming -mem SIZE [-cpus N] [-serial FILE|-] -control SOCK
//	              [-log-level LEVEL] [-no-balloon] [-no-page-reporting] [-transport-in-process]
//
// It boots a PVH kernel and exits with the guest's power-off code; a guest
// failure (triple fault, KVM internal error) prints a register dump and
// exits with status 1. Usage errors exit with status 2.
//
// With -incoming it boots nothing: it builds an empty VM of the given
// shape and waits for a migration, or for guest RAM and the control
// commands state-load and resume (a cold migration or snapshot restore).
//
// SIGTERM, SIGINT or SIGHUP shuts the VMM down (vmm.VM.ServeShutdowns,
// docs/HANDOVER.md): it stops the VM and exits, but not while the VM
// sends a migration in its handover or in post-copy, or is
// handover-unknown (it says "shutdown deferred" and waits); a migration
// it receives whose guest does not run here yet is cancelled first. If
// migrate -resolve resumes the guest here while it waits, the shutdown
// is cancelled and the VMM runs on; the next signal is a new shutdown,
// deferred in the same way. A signal while a shutdown waits ends the
// process at once, of that signal, which may lose the guest; so does
// any signal once the VM stopped (the process is exiting, or stays only
// to answer: below).
//
// A post-copy destination whose post-copy broke for good exits with
// status 1 once its VM is halted. One whose vCPUs could not all be
// halted (one still waits inside KVM_RUN for a page this side lacks)
// stays instead, its guest frozen and lost, answering status
// ("not_halted": true), migrate-status and migrate-resolve, until quit
// or a signal; then it exits at once, status 1, without waiting for that
// vCPU: the exit ends it and the guest (vmm/halt_failed.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/control"
	"github.com/ferryvm/ferry/vmm/memory"
)

func main() {
	os.Exit(realMain(os.Args[1:]))
}

const usage = `usage: ferry-vmm run -kernel FILE -mem SIZE [-cpus N] [-cmdline STR] [-serial FILE|-] [-control SOCK]
                     [-log-level LEVEL] [-no-balloon] [-no-page-reporting] [-transport-in-process]
       ferry-vmm run -incoming -mem SIZE [-cpus N] [-serial FILE|-] -control SOCK
                     [-log-level LEVEL] [-no-balloon] [-no-page-reporting] [-transport-in-process]

Boots a PVH ELF kernel (for example bin/guest.elf) in a KVM virtual machine,
or with -incoming waits, with the same -mem, -cpus and -no-balloon as the
source, for a migrated guest (control commands state-load, then resume).
SIZE takes binary units: 512M, 8G (a plain number means MiB).

SIGTERM, SIGINT or SIGHUP stops the VM and exits, but waits while a migration hands
the VM over or runs in post-copy, or its handover is unknown ("shutdown
deferred"); if migrate -resolve resumes the guest here meanwhile, the VMM
runs on ("shutdown cancelled") and the next signal shuts down anew. A signal
while a shutdown waits exits at once and may lose the guest.

A destination whose post-copy broke exits with status 1; if its vCPUs could
not be halted it stays, the guest frozen ("not_halted" in status), until quit
or a signal, then exits at once with status 1.
`

func realMain(args []string) int {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("ferry-vmm run", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	kernel := fs.String("kernel", "", "PVH ELF kernel to boot (required)")
	memStr := fs.String("mem", "", "guest RAM size, e.g. 1G (required)")
	cpus := fs.Int("cpus", 1, "number of vCPUs")
	cmdline := fs.String("cmdline", "", "guest command line")
	serial := fs.String("serial", "-", "where the guest's COM1 output goes: a file, or - for stdout")
	sock := fs.String("control", "", "unix socket for JSON-lines control commands")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	noBalloon := fs.Bool("no-balloon", false, "leave out the virtio-balloon device")
	noReporting := fs.Bool("no-page-reporting", false, "the balloon offers no free page reporting (freed guest memory stays populated)")
	incoming := fs.Bool("incoming", false, "boot nothing: wait for a migrated guest (needs -control)")
	inProcess := fs.Bool("transport-in-process", false, "run the TCP transport (ferry-transport-tcp) inside this process instead of as a plugin:\npost-copy page requests cross no process boundary (faster faults), but a transport crash takes the VMM down")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %q", fs.Args())
	}
	switch {
	case *incoming && (*kernel != "" || *cmdline != ""):
		return usageError("-incoming takes no -kernel or -cmdline: they arrive with the guest's memory")
	case *incoming && *sock == "":
		return usageError("-incoming needs -control: the state arrives through it")
	case *incoming && *memStr == "":
		return usageError("-mem is required")
	case !*incoming && (*kernel == "" || *memStr == ""):
		return usageError("-kernel and -mem are required")
	}
	size, err := memory.ParseSize(*memStr)
	if err != nil {
		return usageError("-mem: %v", err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageError("-log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	out, closeOut, err := openSerial(*serial)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-vmm:", err)
		return 1
	}
	defer closeOut()
	vm, err := vmm.New(vmm.Config{Kernel: *kernel, Memory: size, CPUs: *cpus, Cmdline: *cmdline, Serial: out,
		NoBalloon: *noBalloon, NoPageReporting: *noReporting, Log: log, Incoming: *incoming, TransportInProcess: *inProcess})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-vmm:", err)
		return 1
	}
	defer vm.Close()
	return run(vm, *sock, log)
}

func usageError(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "ferry-vmm run: "+format+"\n\n", args...)
	fmt.Fprint(os.Stderr, usage)
	return 2
}

// run serves the control socket, stdin and the signals while the VM runs.
func run(vm *vmm.VM, sock string, log *slog.Logger) int {
	var wg sync.WaitGroup
	defer wg.Wait()
	waitSignals := handleSignals(vm)
	defer waitSignals()
	defer vm.Stop() // Run returned: the VM ended (or never started), and so does the signals' loop
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	if sock != "" {
		srv, err := control.NewServer(sock, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ferry-vmm: control socket:", err)
			return 1
		}
		vm.Serve(srv)
		wg.Go(func() {
			if err := srv.Serve(srvCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("control socket", "err", err)
			}
		})
	}
	if isTerminal(os.Stdin) {
		go vm.UART().Feed(srvCtx, os.Stdin) // ends with the process: stdin reads cannot be cancelled
	}
	code, err := vm.Run(context.Background()) // the signals ask ServeShutdowns, not Run's ctx
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-vmm:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// shutdownServer is the VM as the signals see it (vmm.VM).
type shutdownServer interface {
	ServeShutdowns(reqs <-chan os.Signal) os.Signal
}

// shutdownSignals are the signals that shut the VMM down. SIGHUP (the
// terminal or ssh session that started it closed) is one: its default
// action would end the process at once, a guest in post-copy with it.
var shutdownSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// handleSignals hands SIGINT, SIGTERM and SIGHUP to vm (VM.ServeShutdowns) from
// now until the VM stopped; the returned function waits for that. A
// signal vm gives back (one that came while a shutdown waited: the
// operator insists) ends the process at once, of that signal, as its
// default action does; once the VM stopped, the signals get their
// default action back, so one ends the process at once while it exits.
func handleSignals(vm shutdownServer) (wait func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, shutdownSignals...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sig := vm.ServeShutdowns(sigs)
		signal.Reset(shutdownSignals...)
		if s, ok := sig.(syscall.Signal); ok {
			dieOf(s)
		}
	}()
	return func() { <-done }
}

// dieOf ends the process of signal s (its default action, which
// signal.Reset restored), or, if s is ignored (SIG_IGN from the parent),
// exits with status 128+s as a shell reports a death by s.
func dieOf(s syscall.Signal) {
	runtime.LockOSThread()                           // tgkill aims at this thread: s arrives as the call returns
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), s) // Go's handler, not notifying s, dies of it
	os.Exit(128 + int(s))
}

func openSerial(path string) (io.Writer, func(), error) {
	if path == "-" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("-serial: %w", err)
	}
	return f, func() { f.Close() }, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
