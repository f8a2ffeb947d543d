package job

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/json"

	"github.com/ferryvm/ferry/framework/schema"
)

// pluginBlock parses a transport block with body and returns it undecoded.
func pluginBlock(t *testing.T, body string) *Plugin {
	t.Helper()
	src := `
source      { control = "s" }
destination { control = "d" }
transport "tcp" {
` + body + `
}`
	j, diags := Parse("t.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	return &j.Transport
}

func TestDecode(t *testing.T) {
	all := schema.Schema{
		{Name: "s", Type: schema.TypeString, Default: "dflt"},
		{Name: "n", Type: schema.TypeNumber, Default: int64(7)},
		{Name: "b", Type: schema.TypeBool, Default: false},
		{Name: "d", Type: schema.TypeDuration, Default: "10s"},
		{Name: "z", Type: schema.TypeSize, Default: int64(4096)},
		{Name: "r", Type: schema.TypeString, Required: true},
		{Name: "o", Type: schema.TypeNumber}, // optional, no default
	}
	for _, c := range []struct {
		name   string
		body   string
		schema schema.Schema
		want   schema.Config
		errs   []string // summaries, in order; nil: success
	}{
		{"defaults", `r = "x"`, all,
			schema.Config{"s": "dflt", "n": int64(7), "b": false, "d": int64(10 * time.Second), "z": int64(4096), "r": "x"}, nil},
		{"every type", `
r = "x"
s = "hello"
n = -3
b = true
d = "1.5s"
z = "1GiB"
o = 9`, all,
			schema.Config{"s": "hello", "n": int64(-3), "b": true, "d": int64(1500 * time.Millisecond), "z": int64(1 << 30), "r": "x", "o": int64(9)}, nil},
		{"conversions as in terraform", `
r = 5
n = "12"
b = "true"
z = 8192`, all,
			schema.Config{"s": "dflt", "n": int64(12), "b": true, "d": int64(10 * time.Second), "z": int64(8192), "r": "5"}, nil},
		{"null is unset", `
r = "x"
s = null`, all,
			schema.Config{"s": "dflt", "n": int64(7), "b": false, "d": int64(10 * time.Second), "z": int64(4096), "r": "x"}, nil},
		{"required null is missing", `r = null`, all, nil, []string{"Missing required argument"}},
		{"time.Duration and uint64 defaults", ``, schema.Schema{
			{Name: "d", Type: schema.TypeDuration, Default: 2 * time.Second},
			{Name: "z", Type: schema.TypeSize, Default: uint64(1 << 20)},
			{Name: "n", Type: schema.TypeNumber, Default: 3},
		}, schema.Config{"d": int64(2 * time.Second), "z": int64(1 << 20), "n": int64(3)}, nil},
		{"empty schema", `x = 1`, nil, nil, []string{"Unsupported argument"}},
		{"every error at once", `
o = 1.5
n = 99999999999999999999
s = [1]
d = "1"
z = "1Q"
q = 1
blk {}`, all, nil, []string{
			"Missing required argument", "Wrong type for o", "Invalid n", "Wrong type for s",
			"Invalid d", "Invalid z", "Unsupported argument", "Unsupported block type"}},
		{"schema: bad name", ``, schema.Schema{{Name: "a b", Type: schema.TypeString}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: twice", ``, schema.Schema{{Name: "a", Type: schema.TypeString}, {Name: "a", Type: schema.TypeBool}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: bad type", ``, schema.Schema{{Name: "a", Type: 0}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: required default", ``, schema.Schema{{Name: "a", Type: schema.TypeString, Required: true, Default: "x"}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: default type", ``, schema.Schema{{Name: "a", Type: schema.TypeString, Default: 3}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: bad duration default", ``, schema.Schema{{Name: "a", Type: schema.TypeDuration, Default: "soon"}}, nil, []string{"Plugin reports a bad schema"}},
		{"schema: negative size default", ``, schema.Schema{{Name: "a", Type: schema.TypeSize, Default: int64(-1)}}, nil, []string{"Plugin reports a bad schema"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := pluginBlock(t, c.body)
			diags := p.Decode(c.schema)
			if got := summaries(diags); strings.Join(got, "|") != strings.Join(c.errs, "|") {
				t.Fatalf("diagnostics %q, want %q\n%v", got, c.errs, diags)
			}
			if c.errs == nil && !maps.Equal(p.Config, c.want) {
				t.Errorf("config %#v, want %#v", p.Config, c.want)
			}
			if c.errs != nil && p.Config != nil {
				t.Errorf("config %#v set despite errors", p.Config)
			}
		})
	}
}

// TestDecodeAnyBody decodes a plugin body that is not native syntax: the
// decoder works on any hcl.Body.
func TestDecodeAnyBody(t *testing.T) {
	decode := func(src string) (*Plugin, hcl.Diagnostics) {
		f, diags := json.Parse([]byte(src), "t.json")
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		p := &Plugin{Kind: KindTransport, Name: "tcp", Body: f.Body}
		return p, p.Decode(tcpSchema)
	}
	p, diags := decode(`{"listen": "127.0.0.1:1", "streams": 4}`)
	want := schema.Config{"listen": "127.0.0.1:1", "streams": int64(4), "compress": "lz4", "connect_timeout": int64(10 * time.Second)}
	if diags.HasErrors() || !maps.Equal(p.Config, want) {
		t.Errorf("decoded %#v, %v; want %#v", p.Config, diags, want)
	}
	_, diags = decode(`{"listen": "127.0.0.1:1", "bogus": 1}`)
	if got := summaries(diags); len(got) != 1 || got[0] != "Unsupported argument" {
		t.Errorf("diagnostics %q, want one Unsupported argument", got)
	}
}

// TestDecodeNoBody: a Plugin Parse could not fill decodes to nothing.
func TestDecodeNoBody(t *testing.T) {
	var p Plugin
	if diags := p.Decode(tcpSchema); diags != nil || p.Config != nil {
		t.Fatalf("zero Plugin decoded to %v, %v", p.Config, diags)
	}
}

func summaries(diags hcl.Diagnostics) []string {
	var s []string
	for _, d := range diags {
		s = append(s, d.Summary)
	}
	return s
}
