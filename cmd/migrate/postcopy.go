package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/vmm/api"
)

// startPostcopyMain is migrate -start-postcopy: read the job, ask its
// source VMM (migrate-start-postcopy) to switch the running migration to
// post-copy now, and say what happened. Exit 0 when the switch is asked
// for (now or by an earlier call), 1 when the VMM refused or could not be
// reached, 2 for a job that does not parse.
func startPostcopyMain(path string, stdout, stderr io.Writer) int {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return 2
	}
	j, diags := job.Parse(path, src)
	if j == nil || diags.HasErrors() {
		job.FormatDiagnostics(stderr, map[string][]byte{path: src}, diags)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res api.StartPostcopyResult
	if err := callControl(ctx, j.Source.Control, "migrate-start-postcopy", nil, &res); err != nil {
		fmt.Fprintf(stderr, "migrate: start post-copy on the source %s: %v\n", j.Source.Control, err)
		return 1
	}
	fmt.Fprintln(stdout, startPostcopyLine(j.Source.Control, res))
	return 0
}

// startPostcopyLine is what -start-postcopy prints for the source's answer.
func startPostcopyLine(sock string, res api.StartPostcopyResult) string {
	what := "post-copy requested"
	if !res.Requested {
		what = "post-copy already requested"
	}
	phase := ""
	if res.Phase != "" {
		phase = fmt.Sprintf(" (phase %s)", res.Phase)
	}
	return fmt.Sprintf("%s on the source %s%s: %s", what, sock, phase, res.Message)
}
