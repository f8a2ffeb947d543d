// Command ferry-demo is `make demo`: it boots the test guest in one
// ferry-vmm, starts a second ferry-vmm waiting for a migration, migrates
// the running guest with `migrate -config configs/demo.hcl`, and shows the
// guest carrying on — still verifying its memory — on the destination.
//
//	ferry-demo [-bin DIR] [-config FILE] [-mem SIZE] [-workload W] [-demo=false] [-table [-table-mem SIZE] [-table-hog MiB] [-table-json FILE] [-table-qemu]]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/kvm"
)

func main() {
	bin := flag.String("bin", "bin", "directory with ferry-vmm, migrate, guest.elf and plugins/")
	config := flag.String("config", "configs/demo.hcl", "the migration job")
	mem := flag.String("mem", "1G", "guest RAM")
	workload := flag.String("workload", "hog:512,dirty:64@32,kv:32", "guest workload")
	tbl := flag.Bool("table", false, "also run the 2016 table: idle and after-hog guests migrated between two network namespaces over a 10 Gbit/s veth pair, with no hints and with each provider")
	tableMem := flag.String("table-mem", "8G", "guest RAM for the table")
	tableHog := flag.Int("table-hog", 7168, "MiB the table's memory hog touches and frees")
	tableJSON := flag.String("table-json", "", "also write the table's rows as JSON to this file")
	runDemo := flag.Bool("demo", true, "run the demo migration (-demo=false: the table alone)")
	tableQEMU := flag.Bool("table-qemu", false, "also migrate the table's guests with QEMU (qemu-system-x86_64 -machine microvm, virtio-balloon free-page-hint off and on) over the same link")
	flag.Parse()
	if err := kvm.Available(); err != nil && (*runDemo || *tbl) {
		// Said first and plainly: without it the first thing to fail was
		// the source guest ("exited before printing tick 3"), which
		// named neither KVM nor what did not run.
		fmt.Fprintf(os.Stderr, "ferry-demo: SKIPPED, nothing ran (not the demo migration, not the 2016 table): %v\n", err)
		os.Exit(1)
	}
	if *runDemo {
		if err := demo(*bin, *config, *mem, *workload); err != nil {
			fmt.Fprintln(os.Stderr, "ferry-demo:", err)
			os.Exit(1)
		}
	}
	if *tbl {
		fmt.Printf("== the 2016 table (%s guest, a few minutes)\n", *tableMem)
		if err := table(*bin, *tableMem, *tableHog, *tableJSON, *tableQEMU); err != nil {
			fmt.Fprintln(os.Stderr, "ferry-demo:", err)
			os.Exit(1)
		}
	}
}

func demo(bin, config, mem, workload string) error {
	src, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	j, diags := job.Parse(config, src)
	if diags.HasErrors() {
		job.FormatDiagnostics(os.Stderr, map[string][]byte{config: src}, diags)
		return fmt.Errorf("%s does not parse", config)
	}
	for _, sock := range []string{j.Source.Control, j.Destination.Control} {
		if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
			return fmt.Errorf("the directory of control socket %s (%s): %w", sock, config, err)
		}
		os.Remove(sock) // a stale socket from an earlier, killed demo
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vmmBin := filepath.Join(bin, "ferry-vmm")
	fmt.Printf("== source: %s guest running %s\n", mem, workload)
	source, srcOut, err := start(ctx, "source     ", vmmBin, "run", "-kernel", filepath.Join(bin, "guest.elf"),
		"-mem", mem, "-cmdline", "workload="+workload, "-control", j.Source.Control)
	if err != nil {
		return err
	}
	defer stop(source)
	dest, dstOut, err := start(ctx, "destination", vmmBin, "run", "-incoming", "-mem", mem, "-control", j.Destination.Control)
	if err != nil {
		return err
	}
	defer stop(dest)
	if err := waitFor(srcOut, "tick 3 ", 60*time.Second); err != nil {
		return fmt.Errorf("source guest: %w", err)
	}
	fmt.Printf("== migrate -config %s\n", config)
	mig := exec.CommandContext(ctx, filepath.Join(bin, "migrate"), "-config", config)
	mig.Stdout, mig.Stderr = os.Stdout, os.Stderr
	mig.WaitDelay = 10 * time.Second // a killed migrate returns even if a child kept its output open
	if err := mig.Run(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Println("== the guest now runs in the destination VMM:")
	if err := waitFor(dstOut, "verify=ok", 30*time.Second); err != nil {
		return fmt.Errorf("destination guest: %w", err)
	}
	if err := waitFor(dstOut, "verify=ok", 30*time.Second); err != nil {
		return fmt.Errorf("destination guest: %w", err)
	}
	if err := waitFor(dstOut, "verify=ok", 30*time.Second); err != nil {
		return fmt.Errorf("destination guest: %w", err)
	}
	fmt.Println("== done: the guest kept verifying its memory after the move")
	return nil
}

// start runs a VMM, echoing its serial lines with a prefix and sending
// them to the returned channel.
func start(ctx context.Context, name, path string, args ...string) (*exec.Cmd, <-chan string, error) {
	return startEcho(ctx, name, append([]string{path}, args...))
}

// startQuiet is start without echoing the guest's lines.
func startQuiet(ctx context.Context, argv []string) (*exec.Cmd, <-chan string, error) {
	return startEcho(ctx, "", argv)
}

func startEcho(ctx context.Context, name string, argv []string) (*exec.Cmd, <-chan string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if name != "" {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if name != "" {
				fmt.Printf("[%s] %s\n", name, sc.Text())
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	return cmd, lines, nil
}

func stop(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func waitFor(lines <-chan string, s string, d time.Duration) error {
	t := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("exited before printing %q", s)
			}
			if strings.Contains(l, "verify=FAIL") {
				return fmt.Errorf("guest reported %s", l)
			}
			if strings.Contains(l, s) {
				return nil
			}
		case <-t:
			return fmt.Errorf("no %q within %v", s, d)
		}
	}
}
