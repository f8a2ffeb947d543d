package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEarlyExitJSON: every way migrate -json ends before it touches a
// VMM prints exactly one JSON object on stdout, with the reason it
// printed on stderr after "migrate: " as its error and its exit code
// as exit: a run's report for a job refused or unreadable (status
// failed, exit 2: nothing was started), and -check's, -resolve's and
// -start-postcopy's answers likewise. A command line migrate cannot
// read (an unknown flag, no -config, two commands, an argument left
// over) prints its usage on stderr and nothing on stdout, exit 2, as
// docs/JOBS.md says: no mode was read, and -json may not have been.
// Before, a run whose job was refused printed nothing on stdout.
func TestEarlyExitJSON(t *testing.T) {
	dir := t.TempDir()
	const endpoints = `source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
`
	refused := filepath.Join(dir, "refused.hcl")
	os.WriteFile(refused, []byte(endpoints+`transport "tcp" {
  listen = "127.0.0.1:7070"
  strems = 4
}
`), 0o600)
	syntax := filepath.Join(dir, "syntax.hcl")
	os.WriteFile(syntax, []byte(endpoints+"transport \"tcp\" {\n"), 0o600)
	missing := filepath.Join(dir, "missing.hcl")
	for _, tc := range []struct {
		name string
		args []string
		exit int
		mode string // the answer's mode; "": a run's report
		says string // in its error; "": no JSON object at all
	}{
		{"run, job refused", []string{"-config", refused}, 2, "", "has 1 error(s); nothing was started"},
		{"run, HCL syntax", []string{"-config", syntax}, 2, "", "nothing was started"},
		{"run, file unreadable", []string{"-config", missing}, 2, "", "no such file"},
		{"-check, job refused", []string{"-check", "-config", refused}, 2, "check", "nothing was started"},
		{"-check, file unreadable", []string{"-check", "-config", missing}, 2, "check", "no such file"},
		// -resolve and -start-postcopy check no plugin block: a syntax error refuses the job.
		{"-resolve, job refused", []string{"-resolve", "-config", syntax}, 2, "resolve", "nothing was started"},
		{"-resolve, file unreadable", []string{"-resolve", "-config", missing}, 2, "resolve", "no such file"},
		{"-start-postcopy, job refused", []string{"-start-postcopy", "-config", syntax}, 2, "start-postcopy", "nothing was started"},
		{"-start-postcopy, file unreadable", []string{"-start-postcopy", "-config", missing}, 2, "start-postcopy", "no such file"},
		{"unknown flag", []string{"-config", refused, "-bogus"}, 2, "", ""},
		{"bad flag value", []string{"-config", refused, "-verify-pages=sometimes"}, 2, "", ""},
		{"no -config", nil, 2, "", ""},
		{"two commands", []string{"-check", "-resolve", "-config", refused}, 2, "", ""},
		{"an argument left over", []string{"-config", refused, "extra"}, 2, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			args := append([]string{"-json", "-plugin-dir", "/nonexistent"}, tc.args...)
			if tc.mode == "resolve" || tc.mode == "start-postcopy" {
				args = append([]string{"-json"}, tc.args...) // they take no -plugin-dir
			}
			code := realMain(args, &out, &errb)
			t.Logf("migrate %s: exit %d\nstdout %s\nstderr %s", strings.Join(args, " "), code, out.String(), errb.String())
			if code != tc.exit {
				t.Errorf("exit %d, want %d", code, tc.exit)
			}
			if tc.says == "" {
				if out.Len() != 0 {
					t.Errorf("stdout %q, want nothing: the command line was not read", out.String())
				}
				wantSays(t, errb.String(), "usage: migrate")
				return
			}
			m, keys := decodeOne(t, out.String())
			wantKeys(t, keys, []string{"error", "exit"}, []string{"resolve", "steps"})
			if m.Mode != tc.mode {
				t.Errorf("mode %q, want %q", m.Mode, tc.mode)
			}
			if tc.mode == "" && keys["status"] != "failed" {
				t.Errorf("a run's report has status %v, want failed: nothing was started", keys["status"])
			}
			if m.Exit != tc.exit {
				t.Errorf("exit %d in the JSON, want %d", m.Exit, tc.exit)
			}
			wantSays(t, m.Error, tc.says)
			wantErrorSaid(t, m.Error, errb.String())
		})
	}
}
