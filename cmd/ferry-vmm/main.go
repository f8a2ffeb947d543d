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

// run serves the control socket and stdin while the VM runs.
func run(vm *vmm.VM, sock string, log *slog.Logger) int {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	// The first signal stops the VM (Run: not before an outgoing
	// post-copy ended); the second gets the default action and ends the
	// process at once.
	context.AfterFunc(ctx, cancel)
	var wg sync.WaitGroup
	defer wg.Wait()
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
	code, err := vm.Run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-vmm:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
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
