package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ferryvm/ferry/framework/job"
)

// migrate -check (checkMain): the job's checks, and nothing more, with
// the answer as one JSON object with -json (checkAnswer). Until
// TestCheckJSON, -check ignored -json: a script that checks jobs got the
// text lines, or nothing for a bad job.

// errCheckInterrupted is why a run or -check that a signal ended while
// its job was checked did nothing (loadJob stops the plugins it asked).
var errCheckInterrupted = errors.New("interrupted while checking the job: nothing was started, and neither VMM was asked anything")

// checkAnswer is what migrate -check -json prints: whether the job
// passed every check (ok, exit 0), what it would run (the two control
// sockets, the plugins found for its blocks), and the reason for exit 1
// (interrupted) or 2 (the job refused: its mistakes are on stderr, each
// at its file:line:col) exactly as printed on stderr after "migrate: ".
// What it cannot say: what only opening the transport finds, and
// whether a VMM listens at either socket (docs/JOBS.md).
type checkAnswer struct {
	Mode string `json:"mode"`
	OK   bool   `json:"ok"`
	// SourceControl and DestinationControl are the job's control
	// sockets (source.control, destination.control); named apart from
	// -resolve's source and destination, which are looks.
	SourceControl      string          `json:"source_control,omitempty"`
	DestinationControl string          `json:"destination_control,omitempty"`
	Transport          *pluginChecked  `json:"transport,omitempty"`
	Hints              []pluginChecked `json:"hints,omitempty"` // in job order
	Error              string          `json:"error,omitempty"`
	Exit               int             `json:"exit"`
}

// pluginChecked is one of the job's plugin blocks as -check found it:
// its block's label and the plugin binary it would run.
type pluginChecked struct {
	Name   string `json:"name"`
	Plugin string `json:"plugin"` // absolute path
}

// checkMain is migrate -check: check the job at path, its plugins
// searched also in flagDir, and say so; with asJSON also as one JSON
// object on stdout (checkAnswer), the lines it prints there otherwise
// going to stderr. It returns the exit code: 0 ok, 2 the job refused, 1
// interrupted (the first Ctrl-C or SIGTERM stops the plugins it asked;
// the second ends migrate at once, with nothing more said).
func checkMain(path, flagDir string, asJSON bool, stdout, stderr io.Writer) int {
	load := func(ctx context.Context, stderr io.Writer) (*job.Job, pluginSet, int) {
		return loadJob(ctx, path, flagDir, stderr)
	}
	return modeMain(asJSON, stdout, stderr, func(signalled context.Context, said io.Writer) (checkAnswer, int) {
		a := checkJob(signalled, path, load, said, stderr)
		return a, a.Exit
	})
}

// jobLoader is loadJob for one job file and plugin directory: the job
// with its plugins, or nil and the exit status (exitInterrupted where
// ctx cut its checks), its mistakes printed on stderr.
type jobLoader func(ctx context.Context, stderr io.Writer) (*job.Job, pluginSet, int)

// checkJob is checkMain's work: what it says goes to stdout, the job's
// mistakes and its reason for exit 1 or 2 to stderr. The answer is
// load's (loadJob's): interrupted only where signalled cut its checks
// (exitInterrupted). A signal that comes once they all answered cuts
// nothing (-check starts no VMM, and the plugins it asked are stopped
// by then), so the answer is what they found: ok, or the job refused.
// Until TestCheckSignalAfterChecks such a signal made either answer
// "interrupted", exit 1, a refused job's mistakes printed above it.
func checkJob(signalled context.Context, path string, load jobLoader, stdout, stderr io.Writer) checkAnswer {
	a := checkAnswer{Mode: modeCheck}
	var said bytes.Buffer
	j, plugins, code := load(signalled, io.MultiWriter(stderr, &said))
	switch {
	case j == nil && code == exitInterrupted:
		fmt.Fprintln(stderr, "migrate:", errCheckInterrupted)
		a.Error, a.Exit = errCheckInterrupted.Error(), 1
	case j == nil:
		a.Error, a.Exit = lastReason(said.String()), code
	default:
		printCheck(stdout, path, j, plugins)
		a.OK, a.SourceControl, a.DestinationControl = true, j.Source.Control, j.Destination.Control
		a.Transport = &pluginChecked{Name: j.Transport.Name, Plugin: plugins.transport}
		a.Hints = hintsChecked(j, plugins)
	}
	return a
}

// hintsChecked is the job's hint blocks, each with the plugin found for
// it, in job order.
func hintsChecked(j *job.Job, ps pluginSet) []pluginChecked {
	var hs []pluginChecked
	for i, h := range j.Hints {
		hs = append(hs, pluginChecked{Name: h.Name, Plugin: ps.hints[i]})
	}
	return hs
}
