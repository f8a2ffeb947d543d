package configs

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// tcpSchema stands in for the TCP transport's schema.
var tcpSchema = schema.Schema{
	{Name: "listen", Type: schema.TypeString, Required: true, Doc: "address the destination listens on and the source dials"},
	{Name: "connect", Type: schema.TypeString, Doc: "address the source dials when it differs from listen"},
	{Name: "streams", Type: schema.TypeNumber, Default: int64(2), Doc: "parallel connections"},
	{Name: "compress", Type: schema.TypeString, Default: "lz4", Doc: `"lz4" or "none"`},
	{Name: "connect_timeout", Type: schema.TypeDuration, Default: "10s", Doc: "how long the source tries to connect"},
}

// TestConfigs parses every example job, decodes its transport block and
// compares the result with testdata/<name>.golden.
func TestConfigs(t *testing.T) {
	files, err := filepath.Glob("*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example jobs found (%v)", err)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			j, diags := job.Parse(file, src)
			if j != nil {
				diags = append(diags, j.CheckPlugins([]string{"tcp"}, []string{"balloon", "pagemap"})...)
				diags = append(diags, j.Transport.Decode(tcpSchema)...)
			}
			if len(diags) > 0 {
				var b strings.Builder
				job.FormatDiagnostics(&b, map[string][]byte{file: src}, diags)
				t.Fatalf("%s does not decode:\n%s", file, b.String())
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(file, ".hcl")+".golden")
			compare(t, golden, dump(j))
		})
	}
}

// dump renders a decoded job in a stable text form.
func dump(j *job.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "file: %s\n", j.File)
	fmt.Fprintf(&b, "plugin_dir: %q\n", j.PluginDir)
	fmt.Fprintf(&b, "source.control: %q\n", j.Source.Control)
	fmt.Fprintf(&b, "destination.control: %q\n", j.Destination.Control)
	for _, p := range append([]job.Plugin{j.Transport}, j.Hints...) {
		fmt.Fprintf(&b, "%s %q (%s):\n", p.Kind, p.Name, p.LabelRange)
		for _, k := range slices.Sorted(maps.Keys(p.Config)) {
			fmt.Fprintf(&b, "  %s = %#v (%T)\n", k, p.Config[k], p.Config[k])
		}
	}
	fmt.Fprintf(&b, "limits.max_downtime: %v\n", j.Limits.MaxDowntime)
	fmt.Fprintf(&b, "limits.bandwidth: %d bytes/s\n", j.Limits.Bandwidth)
	fmt.Fprintf(&b, "limits.max_passes: %d\n", j.Limits.MaxPasses)
	fmt.Fprintf(&b, "limits.switchover_timeout: %v\n", j.Limits.SwitchoverTimeout)
	fmt.Fprintf(&b, "limits.incoming_timeout: %v\n", j.Limits.IncomingTimeout)
	fmt.Fprintf(&b, "limits.postcopy: %s\n", j.Limits.Postcopy)
	fmt.Fprintf(&b, "limits.reconnect_timeout: %v\n", j.Limits.ReconnectTimeout)
	fmt.Fprintf(&b, "limits.stall_timeout: %v\n", j.Limits.StallTimeout)
	fmt.Fprintf(&b, "security.encryption: %v\n", j.Security.Encryption)
	fmt.Fprintf(&b, "plugin_path: %q\n", j.PluginPath)
	return b.String()
}

func compare(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}
