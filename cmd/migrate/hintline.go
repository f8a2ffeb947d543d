package main

import (
	"fmt"
	"io"

	"github.com/ferryvm/ferry/framework/engine"
)

// printHint prints one provider's line of the report: its status (and
// where it went wrong), what it saved, and how its requests went.
func printHint(w io.Writer, h engine.HintStats) {
	status := h.Status
	if h.Stage != "" {
		status += " in " + h.Stage
	}
	fmt.Fprintf(w, "hint %-8s %s: %d pages skipped, %d ranges (%d stale, %d invalid, %d pages wrong), "+
		"%d requests (%d hung, %d late; deadline %d ms), slowest %d ms\n",
		h.Name, status, h.Skipped, h.Ranges, h.Stale, h.Invalid, h.Wrong, h.Requests, h.Hung, h.Late, h.DeadlineMS, h.SlowestMS)
	if h.ExitStatus != "" || h.LastError != "" {
		fmt.Fprintf(w, "              process: %s; last error: %q\n", h.ExitStatus, h.LastError)
	}
}
