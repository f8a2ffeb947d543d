// Command migrate runs a live migration described by a job file:
//
//	migrate -config job.hcl [-json] [-plugin-dir DIR] [-verify-pages[=strict]]
//	migrate -check -config job.hcl [-json] [-plugin-dir DIR]
//	migrate -resolve -config job.hcl [-json]
//	migrate -start-postcopy -config job.hcl [-json]
//
// It validates the job (HCL diagnostics with file:line:col), checks each
// plugin block against the schema its plugin reports and has the plugin
// check its values (hint.Validator, transport.Validator), tells the
// destination VMM to listen and the source VMM to send (through their
// control sockets), shows progress, and ends with a report. -check
// stops after the job's checks (what only opening the transport finds,
// an address that cannot be bound or reached, is found by the run:
// docs/JOBS.md).
//
// Ctrl-C or SIGTERM cancels in every phase but post-copy: the source
// keeps running and the destination is cancelled (it exits, also when
// it still started its transport plugin: vmm unopenedDone). In post-copy
// the guest runs on the destination with pages only the source holds, so
// the VMMs refuse the cancel and migrate says so and follows the migration
// to its end. A second signal ends migrate at once (the VMMs go on). If the handover ends unknown (docs/HANDOVER.md), migrate resolves
// it at once: it asks both VMMs and runs the guest on exactly one of them.
// -resolve does only that, for when an earlier migrate could not (its
// first Ctrl-C or SIGTERM ends it at its next look or wait, never inside
// an act: errInterrupted). A
// migrate run for a job whose source VMM is already sending (an earlier
// migrate ended early) follows that migration instead of starting one;
// one without an id (started by hand) it leaves alone and fails.
// -start-postcopy, run next to the migrate that drives the job, switches
// its migration to post-copy now (the source VMM's migrate-start-postcopy,
// like QEMU's) and prints what happened; only the job's own migration,
// the one its destination receives. Every act on a VMM's migration
// (cancel, resolve, switch, quit) names the migration's id (-resolve
// names two sides without one by their tag fingerprint, to a VMM of
// control version 3 or later: actName), so a VMM that
// moved on to another migration refuses it; a cancel or quit goes only
// to a VMM that reports a control version (api.ControlVersion) and so
// honours the id: an older one ignores it there, and migrate prints why
// and its migrate-status instead and exits 1 (older.go). A command it
// prints for the operator is printed only where its VMM checks the name
// (handline.go). -start-postcopy
// never switches a migration without an id. With -json, -resolve,
// -start-postcopy and -check print their answer as one JSON object
// (modejson.go, checkmain.go), and a run its report (report.go), also
// for a job refused (exit 2: refusedReport); a command line migrate
// cannot read prints its usage alone, in every mode.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/job"
)

// This file holds the command line (realMain) and what -check prints
// (printCheck). A run is run.go's (run), followed by follow.go's
// follow, its outcome conclude.go's and finish.go's, its report
// report.go's; the control calls it makes, calls.go's; -resolve is
// resolvemain.go's, -start-postcopy postcopy.go's, -check checkmain.go's.

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "job file (HCL), e.g. configs/demo.hcl (required)")
	asJSON := fs.Bool("json", false, "print the report (-resolve, -start-postcopy, -check: their answer) as one JSON object")
	var verify verifyMode
	fs.Var(&verify, "verify-pages", "test mode: compare a hash of every page on both sides before the destination runs, except pages\nhinted free (trusted); =strict compares those too (they must read as the zeros the destination holds)")
	pluginDir := fs.String("plugin-dir", "", "where plugins live, searched after the job's plugin_path (default: the job's plugin_dir, else plugins/ beside this binary)")
	resolveOnly := fs.Bool("resolve", false, "only resolve a handover left unknown: ask both VMMs, run the guest on exactly one")
	startPC := fs.Bool("start-postcopy", false, "only switch the job's running migration to post-copy now (run it next to the migrate driving the job)")
	checkOnly := fs.Bool("check", false, "only check the job: the file, the plugins it names and their blocks (each plugin asked for its schema and its own checks; what only opening the transport finds is not checked); touches no VMM")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0 // asked for: the usage is the answer
	} else if err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if commands := countTrue(*resolveOnly, *startPC, *checkOnly); commands > 1 {
		fmt.Fprintln(stderr, "migrate: -resolve, -start-postcopy and -check are separate commands: give one\n"+usage)
		return 2
	}
	if *startPC {
		return startPostcopyMain(*cfgPath, *asJSON, stdout, stderr)
	}
	if *checkOnly {
		return checkMain(*cfgPath, *pluginDir, *asJSON, stdout, stderr)
	}
	if *resolveOnly {
		return resolveMain(*cfgPath, *asJSON, stdout, stderr)
	}
	// Before the job's plugins start (loadJob asks them for their
	// schemas): a signal that came earlier would end migrate with them
	// still running, and with nothing said.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal ends migrate at once
	// What loadJob prints, for a refusal's reason (lastReason).
	var said bytes.Buffer
	j, plugins, code := loadJob(ctx, *cfgPath, *pluginDir, io.MultiWriter(stderr, &said))
	var rep report
	var err error
	switch {
	case j == nil && code != exitInterrupted:
		// Refused, or unreadable: loadJob's answer, whatever signal
		// came after it (as -check's: checkJob). With -json, one
		// report says so (until TestEarlyExitJSON, nothing on stdout).
		if *asJSON {
			writeReport(stdout, refusedReport(lastReason(said.String()), code, time.Since(start)), true)
		}
		return code
	case j == nil || ctx.Err() != nil:
		// loadJob's checks were cut, or a signal came after them:
		// nothing is started.
		rep = report{Report: engine.Report{Status: engine.StatusCancelled}}
		err = errCheckInterrupted
		rep.Error = err.Error()
	default:
		rep, err = run(ctx, start, j, plugins, verify, newProgress(stderr), stderr)
	}
	rep.WallMS = time.Since(start).Milliseconds()
	if err != nil {
		rep.Exit = 1
	}
	writeReport(stdout, rep, *asJSON)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
	}
	return rep.Exit
}

const usage = "usage: migrate -config job.hcl [-json] [-plugin-dir DIR] [-verify-pages[=strict]]\n" +
	"       migrate -check -config job.hcl [-json] [-plugin-dir DIR]\n" +
	"       migrate -resolve -config job.hcl [-json]\n" +
	"       migrate -start-postcopy -config job.hcl [-json]"

// countTrue counts the flags set.
func countTrue(flags ...bool) int {
	n := 0
	for _, f := range flags {
		if f {
			n++
		}
	}
	return n
}

// printCheck says what a job that passed every check would run (migrate
// -check): the VMMs and the plugin binaries.
func printCheck(w io.Writer, path string, j *job.Job, ps pluginSet) {
	fmt.Fprintf(w, "%s: ok\n", path)
	fmt.Fprintf(w, "source        %s\n", j.Source.Control)
	fmt.Fprintf(w, "destination   %s\n", j.Destination.Control)
	fmt.Fprintf(w, "transport     %s (%s)\n", j.Transport.Name, ps.transport)
	for i, h := range j.Hints {
		fmt.Fprintf(w, "hint          %s (%s)\n", h.Name, ps.hints[i])
	}
}

// pluginSet is where the job's plugins were found.
type pluginSet struct {
	dirs       []string          // the search path, absolute, in order
	transports map[string]string // every transport plugin found: name → path
	hintPaths  map[string]string // every hint provider found: name → path
	transport  string            // absolute path of the job's transport plugin
	hints      []string          // absolute paths of the job's hint providers, in job order
}
