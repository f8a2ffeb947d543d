package job

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that no input makes any step panic, and that a job
// that comes through every step without errors satisfies the documented
// bounds.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../../configs/*.hcl", "testdata/errors/*.hcl"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if src, err := os.ReadFile(file); err == nil {
				f.Add(src)
			}
		}
	}
	f.Add([]byte("source { control = \"\\u0000\" }\nhint \"balloon\" { chunk = \"8191PiB\" }"))
	f.Fuzz(func(t *testing.T, src []byte) {
		j, diags := load("f.hcl", src)
		if err := FormatDiagnostics(io.Discard, map[string][]byte{"f.hcl": src}, diags); err != nil {
			t.Fatal(err)
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without a summary: %+v", d)
			}
		}
		if j == nil || diags.HasErrors() {
			return
		}
		for i, d := range j.PluginPath {
			if strings.TrimSpace(d) == "" || len(j.PluginPathRanges) != len(j.PluginPath) {
				t.Fatalf("plugin_path entry %d %q accepted (%d ranges for %d entries)", i, d, len(j.PluginPathRanges), len(j.PluginPath))
			}
		}
		l := j.Limits
		if j.Source.Control == "" || j.Destination.Control == "" || j.Transport.Name == "" ||
			l.MaxDowntime < time.Millisecond || l.MaxDowntime >= MaxMaxDowntime || l.MaxPasses < 1 || l.MaxPasses > MaxMaxPasses ||
			l.SwitchoverTimeout < time.Millisecond || l.SwitchoverTimeout >= MaxSwitchoverTimeout ||
			l.IncomingTimeout < time.Millisecond || l.IncomingTimeout >= MaxIncomingTimeout ||
			l.Postcopy == "" || !l.Postcopy.Valid() || l.ReconnectTimeout < time.Millisecond || l.ReconnectTimeout >= MaxReconnectTimeout ||
			l.StallTimeout < MinStallTimeout || l.StallTimeout >= MaxStallTimeout {
			t.Fatalf("accepted a job out of bounds: %+v", j)
		}
		if j.Transport.Name == "tcp" && j.Transport.Config["listen"] == nil {
			t.Fatalf("accepted a tcp block without listen: %+v", j.Transport.Config)
		}
	})
}
