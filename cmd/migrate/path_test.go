package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestPluginPath: a provider in a plugin_path directory is found there,
// before the one of the same name in the plugin directory, and its block
// is checked against its schema; an entry that is no directory is an
// error at its line, reported with the job's other errors.
func TestPluginPath(t *testing.T) {
	own := t.TempDir() // a third party's directory, relative to the job file
	if err := os.Symlink(plugintest.Path(t, "ferry-hint-balloon"), filepath.Join(own, "ferry-hint-balloon")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(own))
	src := fmt.Sprintf(`plugin_path = ["missing", %q]
source { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "tcp" { listen = "127.0.0.1:7070" }
hint "balloon" { chunk = "lots" }
`, filepath.Base(own))
	if err := os.WriteFile("job.hcl", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_, ps, code := loadJob(t.Context(), "job.hcl", plugintest.Dir(), &out)
	want := []string{
		`job.hcl:1:16: Plugin directory not found: plugin_path names "missing"`,
		`job.hcl:5:26: Invalid chunk`,
		`migrate: job.hcl has 2 error(s); nothing was started`,
	}
	if code != 2 || !matchLines(out.String(), want) {
		t.Errorf("status %d, output:\n%s\nwant lines starting with:\n%s", code, out.String(), strings.Join(want, "\n"))
	}
	wantDirs := []string{filepath.Join(filepath.Dir(own), "missing"), own, plugintest.Dir()}
	if strings.Join(ps.dirs, ":") != strings.Join(wantDirs, ":") {
		t.Errorf("search path %q, want %q", ps.dirs, wantDirs)
	}
	if len(ps.hints) != 1 || ps.hints[0] != filepath.Join(own, "ferry-hint-balloon") ||
		ps.transport != filepath.Join(plugintest.Dir(), "ferry-transport-tcp") {
		t.Errorf("hints %q, transport %q: want the balloon from plugin_path, the transport from the plugin directory", ps.hints, ps.transport)
	}

	src = strings.Replace(src, `"missing", `, "", 1)
	src = strings.Replace(src, `"lots"`, `"4MiB"`, 1)
	if err := os.WriteFile("job.hcl", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if j, _, code := loadJob(t.Context(), "job.hcl", plugintest.Dir(), &out); j == nil || code != 0 {
		t.Errorf("status %d, output:\n%s", code, out.String())
	}
}
