package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"testing"
	"time"
)

func TestCoerce(t *testing.T) {
	schema := Schema{
		{Name: "listen", Type: TypeString, Required: true},
		{Name: "streams", Type: TypeNumber, Default: int64(2)},
		{Name: "compress", Type: TypeString, Default: "lz4"},
		{Name: "timeout", Type: TypeDuration, Default: int64(10e9)},
		{Name: "tls", Type: TypeBool},
	}
	var in map[string]any
	json.Unmarshal([]byte(`{"listen":"127.0.0.1:1","streams":4,"tls":true}`), &in)
	got, err := Coerce(schema, in)
	if err != nil {
		t.Fatal(err)
	}
	if got["listen"] != "127.0.0.1:1" || got["streams"] != int64(4) || got["compress"] != "lz4" ||
		got["timeout"] != int64(10e9) || got["tls"] != true {
		t.Errorf("got %#v", got)
	}
	for _, bad := range []string{`{}`, `{"listen":1}`, `{"listen":"x","streams":1.5}`, `{"listen":"x","nope":1}`, `{"listen":"x","tls":"yes"}`} {
		in = nil
		json.Unmarshal([]byte(bad), &in)
		if _, err := Coerce(schema, in); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err %v, want ErrBadConfig", bad, err)
		}
	}
	_, err = Coerce(schema, map[string]any{"a": 1, "b": 2})
	if err == nil || !strings.Contains(err.Error(), `unknown attribute "a"`) || !strings.Contains(err.Error(), "missing required") {
		t.Errorf("all problems at once: %v", err)
	}
}

// TestCoerceJobForms: numbers and bools written as strings, as a job
// file may write them (min_run = "2", on = "true"), are taken as the job
// file takes them; a string attribute takes only a string.
func TestCoerceJobForms(t *testing.T) {
	sch := Schema{{Name: "n", Type: TypeNumber}, {Name: "on", Type: TypeBool}, {Name: "s", Type: TypeString}}
	for _, c := range []struct {
		in   any
		attr string
		want any // nil: refused
	}{
		{"2", "n", int64(2)}, {"-7", "n", int64(-7)}, {"1e3", "n", int64(1000)}, {"2.0", "n", int64(2)},
		{"2.5", "n", nil}, {"two", "n", nil}, {"", "n", nil}, {"1e30", "n", nil},
		{"true", "on", true}, {"1", "on", true}, {"false", "on", false}, {"0", "on", false},
		{"yes", "on", nil}, {"True", "on", nil}, {[]int{1}, "on", nil},
		{"x", "s", "x"}, {int64(2), "s", nil}, {true, "s", nil},
	} {
		got, err := Coerce(sch, map[string]any{c.attr: c.in})
		switch {
		case c.want == nil && !errors.Is(err, ErrBadConfig):
			t.Errorf("%s = %#v: %v, %v; want ErrBadConfig", c.attr, c.in, got, err)
		case c.want != nil && (err != nil || got[c.attr] != c.want):
			t.Errorf("%s = %#v: %#v, %v; want %#v", c.attr, c.in, got[c.attr], err, c.want)
		}
	}
}

// TestCoerceUnits: durations, sizes and addresses come as numbers (JSON,
// int64) or as the job file writes them; Config holds int64 either way,
// and what does not fit is ErrBadConfig naming the attribute.
func TestCoerceUnits(t *testing.T) {
	sch := Schema{
		{Name: "base", Type: TypeAddress, Default: int64(0x1000000)},
		{Name: "chunk", Type: TypeSize},
		{Name: "wait", Type: TypeDuration},
		{Name: "n", Type: TypeNumber},
	}
	for _, c := range []struct {
		in   map[string]any
		want Config
		err  string
	}{
		{map[string]any{}, Config{"base": int64(0x1000000)}, ""},
		{map[string]any{"base": "16M", "chunk": "1MiB", "wait": "150ms"},
			Config{"base": int64(16 << 20), "chunk": int64(1 << 20), "wait": int64(150e6)}, ""},
		{map[string]any{"base": float64(4096), "chunk": json.Number("8192"), "wait": 2 * time.Second},
			Config{"base": int64(4096), "chunk": int64(8192), "wait": int64(2e9)}, ""},
		{map[string]any{"base": "0X1_0000", "n": -3}, Config{"base": int64(0x10000), "n": int64(-3)}, ""},
		{map[string]any{"base": "0xfffff"}, Config{"base": int64(0xfffff)}, ""},
		{map[string]any{"base": "16 megs"}, nil, `attribute "base": invalid address "16 megs": unknown unit "megs"`},
		{map[string]any{"base": "0x"}, nil, "not a hexadecimal number"},
		{map[string]any{"base": "0x8000000000000000"}, nil, "too large"},
		{map[string]any{"base": -1}, nil, `attribute "base": -1 is negative`},
		{map[string]any{"chunk": "1 gigabit"}, nil, "bytes, not bits"},
		{map[string]any{"wait": "50"}, nil, `has no unit: write "50ms"`},
		{map[string]any{"base": "16 M", "chunk": "1 MiB", "wait": "150 ms"}, // a space before each unit
			Config{"base": int64(16 << 20), "chunk": int64(1 << 20), "wait": int64(150e6)}, ""},
		{map[string]any{"n": "3"}, Config{"base": int64(0x1000000), "n": int64(3)}, ""},
		{map[string]any{"n": "3 pages"}, nil, `attribute "n": "3 pages" is not a number`},
	} {
		got, err := Coerce(sch, c.in)
		if c.err != "" {
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Coerce(%v): %v, want ErrBadConfig containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("Coerce(%v) = %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0x1000000", 0x1000000, true}, {" 0xFFFF ", 0xffff, true}, {"0x7fffffffffffffff", 1<<63 - 1, true},
		{"0", 0, true}, {"4096", 4096, true}, {"16M", 16 << 20, true}, {"4GiB", 4 << 30, true}, {"1.5K", 1536, true},
		{"", 0, false}, {"0x", 0, false}, {"0xg", 0, false}, {"-0x10", 0, false}, {"0x10000000000000000", 0, false},
		{"16 megs", 0, false}, {"0.5", 0, false},
		{"16 M", 16 << 20, true}, {"4 GiB", 4 << 30, true}, {"0x 1000", 0, false}, {"0x1000 M", 0, false}, // a space before a size's unit only
	} {
		got, err := ParseAddress(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseAddress(%q) = %#x, %v; want %#x, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseAddress: no input panics; what parses fits a Config int64,
// and a hexadecimal result reads back the same.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"0x1000000", "16M", "0x", "0x_1", "1.5K", "8191PiB", "0xffffffffffffffff", " 4096 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseAddress(s)
		if err != nil {
			return
		}
		if n > math.MaxInt64 {
			t.Fatalf("ParseAddress(%q) = %#x: does not fit an int64", s, n)
		}
		if back, err := ParseAddress(fmt.Sprintf("%#x", n)); err != nil || back != n {
			t.Fatalf("ParseAddress(%q) = %#x, which reads back as %#x, %v", s, n, back, err)
		}
	})
}

// FuzzParseUnits: sizes, bandwidths and durations as a job file writes
// them. No input panics; a size or bandwidth that parses fits a Config
// int64 and reads back the same written in plain bytes; a bandwidth is
// the size before its "/s"; a duration is not negative and reads back
// the same as Go writes it.
func FuzzParseUnits(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GiB", "1G", "100MB", "4096", "0", "8191PiB", "9223372036854775807",
		"0.5K", "1.0000000000000000001K", "10 Gbit", "1GiB/s", " 2 kB/s ", "50ms", "1.5s", "1m30s", "-1s", "1e3s", "500 ms", "1 m30 s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil {
			if n > math.MaxInt64 {
				t.Fatalf("ParseSize(%q) = %d: does not fit an int64", s, n)
			}
			if back, err := ParseSize(fmt.Sprint(n)); err != nil || back != n {
				t.Fatalf("ParseSize(%q) = %d, which reads back as %d, %v", s, n, back, err)
			}
			if bw, err := ParseBandwidth(s + "/s"); err != nil || bw != n {
				t.Fatalf("ParseBandwidth(%q) = %d, %v; ParseSize says %d", s+"/s", bw, err, n)
			}
		}
		if n, err := ParseBandwidth(s); err == nil && n > math.MaxInt64 {
			t.Fatalf("ParseBandwidth(%q) = %d: does not fit an int64", s, n)
		}
		if d, err := ParseDuration(s); err == nil {
			if d < 0 {
				t.Fatalf("ParseDuration(%q) = %v", s, d)
			}
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v, which reads back as %v, %v", s, d, back, err)
			}
		}
	})
}
