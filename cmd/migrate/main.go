// Command migrate runs a live migration described by a job file:
//
//	migrate -config job.hcl [-json]
//
// It validates the job (HCL diagnostics with file:line:col), checks the
// transport block against the schema the transport plugin reports, tells
// the destination VMM to listen and the source VMM to send (through their
// control sockets), shows progress, and ends with a report. Ctrl-C cancels:
// the source keeps running.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/control"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "job file (HCL), e.g. configs/demo.hcl (required)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	verify := fs.Bool("verify-pages", false, "test mode: compare a hash of every page on both sides before the destination runs")
	pluginDir := fs.String("plugin-dir", "", "where plugins live (default: the job's plugin_dir, else plugins/ beside this binary)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: migrate -config job.hcl [-json] [-plugin-dir DIR] [-verify-pages]")
		return 2
	}
	j, plugins, code := loadJob(*cfgPath, *pluginDir, stderr)
	if j == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, j, plugins, *verify, newProgress(stderr))
	if *asJSON {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return 1
	}
	return 0
}

// report is what migrate prints: the source's engine report plus what
// the destination saw.
type report struct {
	engine.Report
	Destination *engine.Report `json:"destination,omitempty"`
}

// run drives both VMMs through one migration.
func run(ctx context.Context, j *job.Job, p pluginSet, verify bool, prog *progress) (report, error) {
	rep := report{Report: engine.Report{Status: "failed"}}
	args := vmm.MigrateArgs{Plugin: p.transport, Transport: map[string]any(j.Transport.Config),
		MaxDowntimeMS: j.Limits.MaxDowntime.Milliseconds(), Bandwidth: j.Limits.Bandwidth, MaxPasses: j.Limits.MaxPasses,
		VerifyPages: verify, Hints: hintArgs(j, p)}
	srcCreds, dstCreds, err := credentials(j)
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	call := func(sock, cmd string, a, res any) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return control.Call(cctx, sock, cmd, a, res)
	}
	if err := call(j.Destination.Control, "migrate-incoming", withCredentials(args, dstCreds), nil); err != nil {
		rep.Error = err.Error()
		return rep, fmt.Errorf("destination %s: %w", j.Destination.Control, err)
	}
	if err := call(j.Source.Control, "migrate-send", withCredentials(args, srcCreds), nil); err != nil {
		call(j.Destination.Control, "quit", nil, nil) // nothing will connect to it
		rep.Error = err.Error()
		return rep, fmt.Errorf("source %s: %w", j.Source.Control, err)
	}
	src, err := follow(ctx, j.Source.Control, call, prog)
	prog.finish()
	if src.Report != nil {
		rep.Report = *src.Report
	}
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	dst, derr := follow(context.WithoutCancel(ctx), j.Destination.Control, call, nil)
	if dst.Report != nil {
		rep.Destination = dst.Report
	}
	if rep.Status != "completed" {
		return rep, fmt.Errorf("migration %s: %s (the source keeps running)", rep.Status, rep.Error)
	}
	if derr != nil || dst.Report == nil || dst.Report.Status != "completed" {
		return rep, fmt.Errorf("the source handed over but the destination reports %+v (%v)", dst.Report, derr)
	}
	call(j.Source.Control, "quit", nil, nil) // the VM lives on the destination now
	return rep, nil
}

// follow polls migrate-status until the migration is done; on ctx's end it
// cancels the migration once and keeps following until it stopped.
func follow(ctx context.Context, sock string, call func(string, string, any, any) error, prog *progress) (vmm.Migration, error) {
	var st vmm.Migration
	cancelled := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(24 * time.Hour)
	for time.Now().Before(deadline) {
		if err := call(sock, "migrate-status", nil, &st); err != nil {
			return st, fmt.Errorf("%s: %w", sock, err)
		}
		if prog != nil {
			prog.update(st.Progress)
		}
		if st.Done {
			return st, nil
		}
		if ctx.Err() != nil && !cancelled {
			cancelled = true
			call(sock, "migrate-cancel", nil, nil)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	return st, errors.New("migration did not finish within 24 hours")
}

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "status        %s\n", r.Status)
	if r.Error != "" {
		fmt.Fprintf(w, "error         %s\n", r.Error)
	}
	fmt.Fprintf(w, "total         %d ms\n", r.TotalMS)
	fmt.Fprintf(w, "downtime      %d ms\n", r.DowntimeMS)
	fmt.Fprintf(w, "bytes on wire %d (%.1f MiB)\n", r.BytesWire, float64(r.BytesWire)/(1<<20))
	fmt.Fprintf(w, "pages         %d sent, %d zero, %d skipped of %d\n", r.PagesSent, r.PagesZero, r.PagesSkipped, r.TotalPages)
	for reason, n := range r.SkippedBy {
		fmt.Fprintf(w, "  skipped     %d by %s\n", n, reason)
	}
	fmt.Fprintf(w, "passes        %d\n", r.Passes)
	if r.Encryption != "" {
		fmt.Fprintf(w, "encryption    %s\n", r.Encryption)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(w, "hint %-8s %s: %d pages skipped, %d ranges (%d stale, %d invalid), %d requests, slowest %d ms\n",
			h.Name, h.Status, h.Skipped, h.Ranges, h.Stale, h.Invalid, h.Requests, h.SlowestMS)
	}
	fmt.Fprintf(w, "throughput    %.1f MB/s\n", r.ThroughputMB)
}

// pluginSet is where the job's plugins were found.
type pluginSet struct {
	dir       string
	transport string   // absolute path of the transport plugin
	hints     []string // absolute paths of the hint providers, in job order
}

func resolvePluginDir(flagDir, jobDir, jobFile string) string {
	switch {
	case flagDir != "":
		return flagDir
	case jobDir != "" && filepath.IsAbs(jobDir):
		return jobDir
	case jobDir != "":
		return filepath.Join(filepath.Dir(jobFile), jobDir)
	}
	exe, err := os.Executable()
	if err != nil {
		return "plugins"
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}
