package job

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  string // substring of the error; "" for success
	}{
		{"50ms", 50 * time.Millisecond, ""},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{" 300ms ", 300 * time.Millisecond, ""},
		{"0", 0, ""},
		{"250us", 250 * time.Microsecond, ""},
		{"", 0, "empty duration"},
		{"50", 0, `has no unit: write "50ms"`},
		{"1.5", 0, "has no unit"},
		{"5 ms", 5 * time.Millisecond, ""}, // a space before the unit, as in "512 MiB"
		{"500 ms", 500 * time.Millisecond, ""},
		{"1.5 s", 1500 * time.Millisecond, ""},
		{" 300\tms ", 300 * time.Millisecond, ""},
		{"1 m30 s", 90 * time.Second, ""},
		{"1m 30s", 0, `invalid duration "1m 30s": write a number and a unit, like "50ms", "1.5s", "500 ms" or "1m30s"`},
		{"5 0ms", 0, "invalid duration"},
		{"5 ", 0, `has no unit: write "5ms"`},
		{"- 5ms", 0, "invalid duration"},
		{"-5 ms", 0, "negative"},
		{"fast", 0, `invalid duration "fast": write a number and a unit, like "50ms", "1.5s", "500 ms" or "1m30s" (units: ns, us, ms, s, m, h)`},
		{"-1s", 0, "negative"},
		{"-1", 0, "negative"}, // not: has no unit, write "-1ms"
		{"-1.5", 0, "negative"},
		{"1e3", 0, `invalid duration "1e3": write a number and a unit`}, // not: has no unit, write "1e3ms" (refused too)
		{"nan", 0, `invalid duration "nan": write a number and a unit`},
		{"1_000", 0, `invalid duration "1_000": write a number and a unit`},
		{"99999999999h", 0, "invalid duration"},
	} {
		got, err := ParseDuration(c.in)
		if !matches(err, c.err) || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error containing %q", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"4096B", 4096, ""},
		{"512MiB", 512 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"1G", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"2 K", 2048, ""},
		{"100MB", 100e6, ""},
		{"1kB", 1000, ""},
		{"1TB", 1e12, ""},
		{"8191PiB", 8191 << 50, ""},
		{"8192PiB", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
		{"1.5B", 0, "not a whole number of bytes"},
		{"", 0, "does not start with a number"},
		{"-1G", 0, "negative"},
		{"1..5G", 0, "does not start with a number"},
		{".5G", 0, "does not start with a number"},
		{"5.G", 0, "does not start with a number"},
		{"1e9", 0, `unknown unit "e9"`},
		{"1Gb", 0, "not bits"},
		{"1Gbit", 0, "not bits"},
		{"1g", 0, `unknown unit "g"`},
		{"1GiB/s", 0, "unknown unit"},
	} {
		got, err := ParseSize(c.in)
		if !matches(err, c.err) || got != c.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v, error containing %q", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseBandwidth(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"0", 0, ""},
		{"0/s", 0, ""},
		{"1GiB/s", 1 << 30, ""},
		{"100MB/s", 100e6, ""},
		{"100MB", 100e6, ""},
		{" 1250MB/s ", 1250e6, ""},
		{"10Gbit/s", 0, "not bits"},
		{"fast", 0, "invalid bandwidth"},
		{"1GiB/h", 0, "unknown unit"},
		{"/s", 0, "does not start with a number"},
		{"40 MB/s", 40e6, ""}, // a space before the unit, as in a size
		{"1 GiB/s", 1 << 30, ""},
		{"1 GiB / s", 0, `unknown unit "GiB / s"`},
		{"-1MB/s", 0, `negative; write bytes per second, like "1GiB/s" or "100MB/s", or "0" for unlimited`},
		{"-1", 0, "negative"},
	} {
		got, err := ParseBandwidth(c.in)
		if !matches(err, c.err) || got != c.want {
			t.Errorf("ParseBandwidth(%q) = %v, %v; want %v, error containing %q", c.in, got, err, c.want, c.err)
		}
	}
}

// matches reports whether err is nil and want is "", or err contains want.
func matches(err error, want string) bool {
	if err == nil || want == "" {
		return err == nil && want == ""
	}
	return strings.Contains(err.Error(), want)
}
