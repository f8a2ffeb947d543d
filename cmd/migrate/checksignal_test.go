package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestCheckSignalAfterChecks: a Ctrl-C or SIGTERM that comes once
// -check's checks all answered (loadJob returned) cuts nothing, so
// -check says what they found: a good job ok (exit 0), a bad one
// refused (exit 2, its reason), not "interrupted". Before, checkJob
// asked the signal again after loadJob, and either answer became
// "interrupted", exit 1, a refused job's mistakes printed above it.
func TestCheckSignalAfterChecks(t *testing.T) {
	dir := t.TempDir()
	const endpoints = `source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
`
	for _, tc := range []struct {
		name, job string
		exit      int
		says      string // in the answer's error; "": none
	}{
		{"good job", endpoints + `transport "tcp" { listen = "127.0.0.1:7070" }` + "\n", 0, ""},
		{"refused job", endpoints + `transport "tcp" {
  listen = "127.0.0.1:7070"
  strems = 4
}
`, 2, "has 1 error(s); nothing was started"},
		{"unreadable job", "", 2, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".hcl")
			if tc.job != "" {
				if err := os.WriteFile(path, []byte(tc.job), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			signalled, signal := context.WithCancel(t.Context())
			defer signal()
			// The signal comes right after the checks answered.
			load := func(ctx context.Context, stderr io.Writer) (*job.Job, pluginSet, int) {
				defer signal()
				return loadJob(ctx, path, plugintest.Dir(), stderr)
			}
			var out, errb strings.Builder
			a := checkJob(signalled, path, load, &out, &errb)
			t.Logf("answer %+v\nstdout %s\nstderr %s", a, out.String(), errb.String())
			if a.Exit != tc.exit || a.OK != (tc.exit == 0) {
				t.Errorf("exit %d, ok %v; want exit %d: the checks had all answered", a.Exit, a.OK, tc.exit)
			}
			wantSaysNone(t, errb.String(), "interrupted")
			if tc.says == "" {
				if a.Error != "" {
					t.Errorf("error %q, want none", a.Error)
				}
				wantSays(t, out.String(), path+": ok")
				return
			}
			wantSays(t, a.Error, tc.says)
			wantErrorSaid(t, a.Error, errb.String())
		})
	}
}
