package job

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ferryvm/ferry/framework/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/**/*.golden from the current output")

// tcpSchema stands in for the TCP transport's schema.
var tcpSchema = schema.Schema{
	{Name: "listen", Type: schema.TypeString, Required: true, Doc: "address the destination listens on and the source dials"},
	{Name: "streams", Type: schema.TypeNumber, Default: int64(2), Doc: "parallel connections"},
	{Name: "compress", Type: schema.TypeString, Default: "lz4", Doc: `"lz4" or "none"`},
	{Name: "connect_timeout", Type: schema.TypeDuration, Default: "10s", Doc: "how long the source tries to connect"},
}

// hintSchema stands in for a hint provider's schema; a distinct named
// type, as the hint kind may declare it.
type hintSchemaType []schema.Attribute

var hintSchema = hintSchemaType{
	{Name: "deadline", Type: schema.TypeDuration, Default: "300ms"},
	{Name: "chunk", Type: schema.TypeSize, Default: "4MiB"},
	{Name: "enabled", Type: schema.TypeBool, Default: true},
}

// rdmaSchema stands in for a transport with address attributes.
var rdmaSchema = schema.Schema{
	{Name: "base", Type: schema.TypeAddress, Default: "0x100000"},
	{Name: "limit", Type: schema.TypeAddress},
	{Name: "align", Type: schema.TypeAddress, Default: int64(4096)},
}

var (
	knownTransports = []string{"tcp", "rdma"}
	knownHints      = []string{"balloon", "pagemap"}
)

// pagemapChecks stands in for a provider's own checks (hint.Validator):
// what its schema cannot say.
func pagemapChecks(cfg schema.Config) []schema.Problem {
	var out []schema.Problem
	if chunk, _ := cfg["chunk"].(int64); chunk%4096 != 0 {
		out = append(out, schema.Problem{Attribute: "chunk", Message: fmt.Sprintf("must be a multiple of 4 KiB, not %d bytes", chunk)})
	}
	if cfg["enabled"] == false && cfg["chunk"] != int64(4<<20) {
		out = append(out, schema.Problem{Message: "a disabled provider takes no chunk"})
	}
	if d, _ := cfg["deadline"].(int64); cfg["enabled"] == false && d < int64(time.Second) {
		out = append(out, schema.Problem{Attribute: "deadline", Message: "must be at least 1s when enabled is false"})
	}
	return out
}

// load runs every step the migrate command runs on a job file: Parse,
// CheckPlugins, then Decode of each plugin block (duplicates included)
// that names a known plugin, and the provider's own checks (here
// pagemap's) of each block that decoded.
func load(name string, src []byte) (*Job, hcl.Diagnostics) {
	j, diags := Parse(name, src)
	if j == nil {
		return nil, diags
	}
	diags = append(diags, j.CheckPlugins(knownTransports, knownHints)...)
	for _, p := range j.Blocks() {
		switch {
		case p.Kind == KindTransport && p.Name == "tcp":
			diags = append(diags, p.Decode(tcpSchema)...)
		case p.Kind == KindTransport && p.Name == "rdma":
			diags = append(diags, p.Decode(rdmaSchema)...)
		case p.Kind == KindHint && (p.Name == "balloon" || p.Name == "pagemap"):
			more := p.Decode(hintSchema)
			diags = append(diags, more...)
			if p.Name == "pagemap" && !more.HasErrors() {
				diags = append(diags, p.Problems(pagemapChecks(p.Config))...)
			}
		}
	}
	return j, diags
}

// TestErrors loads each testdata/errors/*.hcl and compares the formatted
// diagnostics with its .golden file.
func TestErrors(t *testing.T) {
	cases := []struct {
		file   string
		errors int // how many diagnostics the file must give
	}{
		{"unknown_block", 3},
		{"unknown_attribute", 5},
		{"missing_required", 3},
		{"bad_duration", 3},
		{"bad_size", 2},
		{"bad_bandwidth", 1},
		{"duplicate_transport", 3},
		{"wrong_type", 5},
		{"unknown_plugin", 3},
		{"unknown_plugin_attribute", 3},
		{"bad_label", 4},
		{"out_of_range", 5},
		{"not_constant", 3},
		{"syntax", 1},
		{"tabs_unicode", 1},
		{"everything", 12},
		{"duplicate_bodies", 11},
		{"same_socket", 1},
		{"bad_security", 4},
		{"hidden_by_unknown_label", 4},
		{"hidden_by_duplicate", 3},
		{"provider_problems", 3},
		{"bad_plugin_path", 2},
		{"bad_plugin_path_string", 1},
		{"bad_address", 3},
		{"bad_postcopy", 2},
		{"bad_postcopy_type", 2},
		{"bad_stall_timeout", 1},
		{"bad_stall_timeout_long", 1},
		{"bad_stall_timeout_type", 1},
		{"sub_millisecond", 3},
	}
	listed := map[string]bool{}
	for _, c := range cases {
		listed[c.file+".hcl"] = true
		t.Run(c.file, func(t *testing.T) {
			name := filepath.Join("testdata", "errors", c.file+".hcl")
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			_, diags := load(name, src)
			var b strings.Builder
			if err := FormatDiagnostics(&b, map[string][]byte{name: src}, diags); err != nil {
				t.Fatal(err)
			}
			if len(diags) != c.errors || !diags.HasErrors() {
				t.Errorf("got %d diagnostics, want %d errors:\n%s", len(diags), c.errors, b.String())
			}
			compare(t, strings.TrimSuffix(name, ".hcl")+".golden", b.String())
		})
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "errors", "*.hcl"))
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in the table of TestErrors", f)
		}
	}
}

// compare checks got against the golden file, or rewrites it with -update.
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
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}
