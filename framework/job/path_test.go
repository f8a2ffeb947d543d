package job

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
)

const endpoints = `
source      { control = "s" }
destination { control = "d" }
transport "tcp" { listen = "x" }
`

// TestPluginPath: plugin_path's directories come first, in order, then
// plugin_dir or the caller's default; relative ones are the job file's.
func TestPluginPath(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string
	}{
		{``, []string{"/usr/lib/ferry"}},
		{`plugin_dir = "bin"`, []string{"/etc/jobs/bin"}},
		{`plugin_path = ["/opt/a", "b/../c", "/opt/b/"]`, []string{"/opt/a", "/etc/jobs/c", "/opt/b", "/usr/lib/ferry"}},
		{`plugin_path = ["/opt/a"]
plugin_dir = "/srv/ferry"`, []string{"/opt/a", "/srv/ferry"}},
		{`plugin_path = []`, []string{"/usr/lib/ferry"}},
	} {
		j, diags := Parse("/etc/jobs/job.hcl", []byte(c.src+endpoints))
		if diags.HasErrors() {
			t.Errorf("%s: %v", c.src, diags)
			continue
		}
		if got := j.SearchPath("/usr/lib/ferry"); !slices.Equal(got, c.want) {
			t.Errorf("%s: search path %q, want %q", c.src, got, c.want)
		}
		if len(j.PluginPath) != len(j.PluginPathRanges) {
			t.Errorf("%s: %d entries, %d ranges", c.src, len(j.PluginPath), len(j.PluginPathRanges))
		}
	}
	j, _ := Parse("job.hcl", []byte(`plugin_path = ["a", "b"]`+endpoints))
	if r := j.PluginPathRanges[1]; r.Start.Line != 1 || r.Start.Column != 21 {
		t.Errorf("entry 2 at %v, want 1:21", r)
	}
	for _, bad := range []string{`plugin_path = "a"`, `plugin_path = [1, {}]`, `plugin_path = [""]`, `plugin_path = { a = "b" }`} {
		if _, diags := Parse("job.hcl", []byte(bad+endpoints)); !diags.HasErrors() {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestFindPlugins: the first directory holding a name wins; files
// without the prefix, the bare prefix, directories and missing
// directories are skipped.
func TestFindPlugins(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, f := range []string{
		filepath.Join(a, "ferry-hint-kvzero"), filepath.Join(b, "ferry-hint-kvzero"),
		filepath.Join(b, "ferry-hint-balloon"), filepath.Join(b, "ferry-hint-"), filepath.Join(b, "README"),
		filepath.Join(a, "ferry-transport-tcp"),
	} {
		if err := os.WriteFile(f, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(a, "ferry-hint-dir"), 0o755)
	got := FindPlugins([]string{filepath.Join(a, "missing"), a, b}, "ferry-hint-")
	want := map[string]string{"kvzero": filepath.Join(a, "ferry-hint-kvzero"), "balloon": filepath.Join(b, "ferry-hint-balloon")}
	if len(got) != len(want) || got["kvzero"] != want["kvzero"] || got["balloon"] != want["balloon"] {
		t.Errorf("found %v, want %v", got, want)
	}
}

// TestDecodeAddress: an address is hexadecimal or a size, int64 in Config;
// a number converts as in Terraform.
func TestDecodeAddress(t *testing.T) {
	sch := schema.Schema{
		{Name: "min_gpa", Type: schema.TypeAddress, Default: "0x100000"},
		{Name: "max_gpa", Type: schema.TypeAddress, Required: true},
		{Name: "size", Type: schema.TypeAddress},
	}
	p := pluginBlock(t, `
max_gpa = "0x1_0000_0000"
size    = 4096`)
	if diags := p.Decode(sch); diags.HasErrors() {
		t.Fatal(diags)
	}
	if p.Config["min_gpa"] != int64(0x100000) || p.Config["max_gpa"] != int64(1<<32) || p.Config["size"] != int64(4096) {
		t.Errorf("config %#v", p.Config)
	}
	p = pluginBlock(t, `max_gpa = "16M"`)
	if diags := p.Decode(sch); diags.HasErrors() || p.Config["max_gpa"] != int64(16<<20) {
		t.Errorf("16M: %#v, %v", p.Config, diags)
	}
}
