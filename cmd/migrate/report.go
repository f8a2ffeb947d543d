package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
)

// The report migrate prints at the end of a run (report: the source's
// engine report, the destination's, and where a resolve left the guest),
// as text (printReport) or as one JSON object (writeReport, -json). What
// a run puts in it is run.go's and conclude.go's.

// writeReport prints rep as text, or with asJSON as one JSON object
// (migrate -json).
func writeReport(w io.Writer, rep report, asJSON bool) {
	if asJSON {
		json.NewEncoder(w).Encode(rep)
		return
	}
	printReport(w, rep)
}

// report is what migrate prints: the source's engine report plus what
// the destination saw, and how an unknown handover was resolved.
type report struct {
	engine.Report
	Destination *engine.Report `json:"destination,omitempty"`
	// Resolved says where the guest runs after a handover-unknown was
	// resolved, or after the source stopped answering: "destination" or
	// "source"; resolvedBoth where migrate found both sides of the
	// migration running it, or saw it run on both (sawBoth); empty if
	// nothing was resolved.
	Resolved string `json:"resolved,omitempty"`
	// Resolve is what the run's resolve did and saw (resolveRecord):
	// the acts it tried, in order, each with its outcome, the source's
	// quit once it found the guest on the destination included, and
	// each side's last look, as migrate -resolve -json says them; nil
	// where the run ran no resolve. Until TestRunReportSaysResolve the
	// report said where the guest runs and nothing of the acts.
	Resolve *resolveSeen `json:"resolve,omitempty"`
	// WallMS is migrate's own run, from its start to this report: about
	// SetupMS + TotalMS plus the status polls (docs/JOBS.md).
	WallMS int64 `json:"wall_ms"`
	// Exit is migrate's exit code: 0, 1 (error says why), or 2 (the job
	// was refused: refusedReport), as the modes' answers say theirs.
	Exit int `json:"exit"`
}

// refusedReport is the report of a run whose job loadJob refused, or
// could not read (exit 2; wall, migrate's time until then): status
// failed, as a run that started nothing says (the guest stays where it
// is: neither VMM was asked anything), and error the reason printed on
// stderr after "migrate: " (lastReason: the line that ends the list of
// mistakes, or why the file could not be read); the mistakes
// themselves, each at its file:line:col, are on stderr only. It is
// printed with -json alone: the text report of a run that did nothing
// would only repeat stderr. Until TestEarlyExitJSON, migrate -json
// printed nothing on stdout for a refused job.
func refusedReport(reason string, exit int, wall time.Duration) report {
	return report{Report: engine.Report{Status: engine.StatusFailed, Error: reason}, WallMS: wall.Milliseconds(), Exit: exit}
}

// resolvedBoth is report.Resolved where the source and the destination
// of one migration both say they run the guest (errBothRun), or the
// resolver saw the guest run on both, one look after another, so the
// two copies diverged (errBothRan: one may be paused by now): the error
// says BOTH, and neither was stopped. Before, such a report said
// destination, or nothing (TestBothRunResolvedSaysBoth,
// TestBothRanResolvedSaysBoth).
const resolvedBoth = "both"

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "status        %s\n", r.Status)
	if r.Resolved == resolvedBoth {
		fmt.Fprintln(w, "resolved      the guest runs on both sides, or ran on both (BOTH: see the error)")
	} else if r.Resolved != "" {
		fmt.Fprintf(w, "resolved      the guest runs on the %s\n", r.Resolved)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error         %s\n", r.Error)
	}
	printResolve(w, r.Resolve)
	fmt.Fprintf(w, "setup         %d ms (plugins started and configured, before total)\n", r.SetupMS)
	fmt.Fprintf(w, "total         %d ms: connect %d, bulk %d, dirty passes %d, switch-over %d, teardown %d\n",
		r.TotalMS, r.ConnectMS, r.BulkMS, r.DirtyMS, r.SwitchoverMS, r.TeardownMS)
	fmt.Fprintf(w, "downtime      %d ms\n", r.DowntimeMS)
	fmt.Fprintf(w, "bytes on wire %d (%.1f MiB)\n", r.BytesWire, float64(r.BytesWire)/(1<<20))
	fmt.Fprintf(w, "pages         %d sent, %d zero, %d skipped of %d\n", r.PagesSent, r.PagesZero, r.PagesSkipped, r.TotalPages)
	for reason, n := range r.SkippedBy {
		fmt.Fprintf(w, "  skipped     %d by %s\n", n, reason)
	}
	fmt.Fprintf(w, "passes        %d\n", r.Passes)
	printPostcopy(w, r)
	if r.Encryption != "" {
		fmt.Fprintf(w, "encryption    %s\n", encryptionText(r.Encryption))
	}
	for _, h := range r.Hints {
		printHint(w, h)
	}
	if r.PagesChecked > 0 {
		trust := "trusted, not compared"
		if r.VerifyStrict {
			trust = "compared too (strict)"
		}
		fmt.Fprintf(w, "page check    %d pages equal; %d free at switch-over: %s\n", r.PagesChecked, r.PagesFree, trust)
	}
	fmt.Fprintf(w, "throughput    %.1f MB/s\n", r.ThroughputMB)
	if r.WallMS > 0 {
		fmt.Fprintf(w, "migrate       %d ms of wall time\n", r.WallMS)
	}
}

// printResolve says what a run's resolve did (report.Resolve), briefly:
// one line per act it tried, in order, with its outcome, or that it
// sent none; nothing where no resolve ran. Why an act did not take,
// and each side's last look, are in the JSON report's resolve and on
// stderr, not here. Until TestRunReportSaysResolve's text check, the
// text report said nothing of the acts.
func printResolve(w io.Writer, s *resolveSeen) {
	if s == nil {
		return
	}
	if len(s.Steps) == 0 {
		fmt.Fprintln(w, "resolve       no act sent")
		return
	}
	for _, st := range s.Steps {
		fmt.Fprintf(w, "resolve       %s on the %s: %s\n", st.Act, st.To, st.Outcome)
	}
}
