package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestCheckJSON: migrate -check -json prints one JSON object on stdout
// whatever it ends with, as -resolve -json does: a good job's (ok, the
// two control sockets, the plugins it would run, exit 0), the lines it
// prints on stdout without -json going to stderr; a bad job's (exit 2,
// error: the reason printed on stderr after "migrate: ", exactly), its
// mistakes on stderr. Before, -check ignored -json: stdout held the
// text lines, or nothing for a bad job.
func TestCheckJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	const endpoints = `source { control = "/nonexistent/src.sock" }
destination { control = "/nonexistent/dst.sock" }
`
	os.WriteFile(good, []byte(endpoints+`transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" {}
`), 0o600)
	os.WriteFile(bad, []byte(endpoints+`transport "tcp" {
  listen = "127.0.0.1:7070"
  strems = 4
}
`), 0o600)
	type plugin struct {
		Name   string `json:"name"`
		Plugin string `json:"plugin"`
	}
	var a struct {
		Mode        string   `json:"mode"`
		OK          bool     `json:"ok"`
		Source      string   `json:"source_control"`
		Destination string   `json:"destination_control"`
		Transport   *plugin  `json:"transport"`
		Hints       []plugin `json:"hints"`
		Error       string   `json:"error"`
		Exit        int      `json:"exit"`
	}
	check := func(path string) (int, string) {
		t.Helper()
		var out, errb strings.Builder
		code := realMain([]string{"-check", "-json", "-config", path, "-plugin-dir", plugintest.Dir()}, &out, &errb)
		t.Logf("%s: exit %d\nstdout %s\nstderr %s", filepath.Base(path), code, out.String(), errb.String())
		_, keys := decodeOne(t, out.String())
		wantKeys(t, keys, []string{"mode", "ok", "exit"}, nil)
		a.Transport, a.Hints = nil, nil
		if err := json.Unmarshal([]byte(out.String()), &a); err != nil {
			t.Fatal(err)
		}
		return code, errb.String()
	}

	code, stderr := check(good)
	if code != 0 || a.Mode != "check" || !a.OK || a.Exit != 0 || a.Error != "" {
		t.Errorf("good job: exit %d, answer %+v; want mode check, ok, exit 0, no error", code, a)
	}
	if a.Source != "/nonexistent/src.sock" || a.Destination != "/nonexistent/dst.sock" {
		t.Errorf("good job: source %q, destination %q; want the job's control sockets", a.Source, a.Destination)
	}
	if a.Transport == nil || a.Transport.Name != "tcp" || !filepath.IsAbs(a.Transport.Plugin) {
		t.Errorf("good job: transport %+v; want tcp and its plugin's path", a.Transport)
	}
	if len(a.Hints) != 1 || a.Hints[0].Name != "balloon" || !filepath.IsAbs(a.Hints[0].Plugin) {
		t.Errorf("good job: hints %+v; want balloon and its plugin's path", a.Hints)
	}
	wantSays(t, stderr, good+": ok")

	code, stderr = check(bad)
	if code != 2 || a.OK || a.Exit != 2 {
		t.Errorf("bad job: exit %d, answer %+v; want exit 2, not ok", code, a)
	}
	wantErrorSaid(t, a.Error, stderr)
	wantSays(t, a.Error, "has 1 error(s); nothing was started")
	wantSays(t, stderr, `Did you mean "streams"?`)

	code, stderr = check(filepath.Join(dir, "none.hcl"))
	if code != 2 || a.OK || a.Exit != 2 {
		t.Errorf("missing job: exit %d, answer %+v; want exit 2, not ok", code, a)
	}
	wantErrorSaid(t, a.Error, stderr)
}
