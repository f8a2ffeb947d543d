package schema

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The units of the job file: how a duration, a size or an address is
// written in HCL (docs/JOBS.md, "Values and units"). framework/job reads
// job files with them, and Coerce accepts the same strings, so a Config
// written "as the job file would give it" ({"chunk": "1MiB"}) means the
// same everywhere.

const durationUnits = "ns, us, ms, s, m, h"

// ParseDuration reads a duration as written in a job file: a decimal
// number and a unit ("50ms", "1.5s", "1m30s"), or "0". Negative durations
// are refused. Space between a number and its unit is allowed ("500 ms",
// "1 m30 s"), as in a size ("512 MiB"); space anywhere else is not
// ("1m 30s", "5 0ms"): it would take guessing what was meant.
func ParseDuration(s string) (time.Duration, error) {
	t := joinUnits(strings.TrimSpace(s))
	if t == "" {
		return 0, errors.New(`empty duration: write a number and a unit, like "50ms"`)
	}
	// A number alone is a plain decimal one, not whatever
	// strconv.ParseFloat takes ("1e3", "nan", "1_000"): the hint would
	// be "1e3ms", itself refused.
	num, neg := strings.CutPrefix(t, "-")
	switch plain := isDecimal(num) && strings.Trim(num, "0123456789.") == ""; {
	case plain && neg:
		return 0, fmt.Errorf("duration %q is negative: durations count forward from zero", s)
	case plain && t != "0":
		return 0, fmt.Errorf("duration %q has no unit: write %q or %q (units: %s)", s, t+"ms", t+"s", durationUnits)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q: write a number and a unit, like "50ms", "1.5s", "500 ms" or "1m30s" (units: %s)`, s, durationUnits)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative: durations count forward from zero", s)
	}
	return d, nil
}

// joinUnits drops the white space between a number and the unit that
// follows it ("500 ms" is "500ms"): white space (unicode.IsSpace, as
// parseBytes trims before a size's unit) after a digit and before a
// letter. Any other is kept, for time.ParseDuration to refuse.
func joinUnits(t string) string {
	rs := []rune(t)
	out := make([]rune, 0, len(rs))
	for i := 0; i < len(rs); i++ {
		j := i
		for j < len(rs) && unicode.IsSpace(rs[j]) {
			j++
		}
		if j > i && i > 0 && j < len(rs) && '0' <= rs[i-1] && rs[i-1] <= '9' && unicode.IsLetter(rs[j]) {
			i = j // the space between a number and its unit
		}
		out = append(out, rs[i])
	}
	return string(out)
}

// sizeUnits maps a unit to its bytes. A single letter is binary, like
// QEMU and most VM tooling ("1G" = 1 GiB); "MB" is decimal.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"K": 1 << 10, "KiB": 1 << 10, "KB": 1e3, "kB": 1e3,
	"M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
	"G": 1 << 30, "GiB": 1 << 30, "GB": 1e9,
	"T": 1 << 40, "TiB": 1 << 40, "TB": 1e12,
	"P": 1 << 50, "PiB": 1 << 50, "PB": 1e15,
}

const sizeUnitList = "B, KiB, MiB, GiB, TiB, PiB or K, M, G, T, P; decimal KB, MB, GB, TB, PB"

// ParseSize reads a size as written in a job file: a decimal number and
// an optional unit ("512MiB", "1.5GiB", "1G", "100MB", "4096", "0").
// Single letters and the *iB units are binary (K = 1024), the *B units
// decimal (MB = 10^6). The result is a whole number of bytes no larger
// than math.MaxInt64, so it always fits a Config value.
func ParseSize(s string) (uint64, error) {
	n, why := parseBytes(s)
	if why != "" {
		return 0, fmt.Errorf(`invalid size %q: %s; write a number and a unit, like "512MiB" or "1GiB" (units: %s)`, s, why, sizeUnitList)
	}
	return n, nil
}

// ParseBandwidth reads a rate in bytes per second as written in a job
// file: a size with an optional "/s" ("1GiB/s", "100MB/s", "0").
func ParseBandwidth(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	n, why := parseBytes(t)
	if why != "" {
		return 0, fmt.Errorf(`invalid bandwidth %q: %s; write bytes per second, like "1GiB/s" or "100MB/s", or "0" for unlimited (units: %s)`, s, why, sizeUnitList)
	}
	return n, nil
}

// ParseAddress reads an address (TypeAddress) as written in a job file:
// hexadecimal with 0x ("0x1000000"), or a size, decimal with an optional
// unit ("16777216", "16M", "4GiB"). The result is at most
// math.MaxInt64, so it fits a Config value; guest physical addresses
// (52 bits at most on x86-64) always do.
func ParseAddress(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if h, ok := strings.CutPrefix(strings.ToLower(t), "0x"); ok {
		n, err := strconv.ParseUint(strings.ReplaceAll(h, "_", ""), 16, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) || err == nil && n > math.MaxInt64:
			return 0, fmt.Errorf("invalid address %q: too large (at most 0x7fffffffffffffff)", s)
		case err != nil || h == "":
			return 0, fmt.Errorf(`invalid address %q: not a hexadecimal number; write it like "0x1000000"`, s)
		}
		return n, nil
	}
	n, why := parseBytes(t)
	if why != "" {
		return 0, fmt.Errorf(`invalid address %q: %s; write hexadecimal like "0x1000000", or a size like "16M" or "4GiB" (units: %s)`, s, why, sizeUnitList)
	}
	return n, nil
}

// ParseBytes is ParseSize without the wording: it returns why s is not a
// size, or "".
func parseBytes(s string) (uint64, string) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if !isDecimal(num) {
		if rest, ok := strings.CutPrefix(t, "-"); ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			return 0, "it is negative" // a "-1" meant as "no limit" learns what to write instead
		}
		return 0, "it does not start with a number"
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Sprintf("unknown unit %q%s", unit, bitsHint(unit))
	}
	r, _ := new(big.Rat).SetString(num) // isDecimal vetted num
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, "not a whole number of bytes"
	}
	if n := r.Num(); n.IsInt64() {
		return uint64(n.Int64()), ""
	}
	return 0, "too large (at most 8 EiB)"
}

// isDecimal reports whether s is digits with at most one inner dot.
func isDecimal(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot >= 0 {
		if strings.IndexByte(s[dot+1:], '.') >= 0 || dot == 0 || dot == len(s)-1 {
			return false
		}
	}
	return s != ""
}

// bitsHint explains, for a unit that looks like bits, that sizes are bytes.
func bitsHint(unit string) string {
	u := strings.ToLower(unit)
	if strings.Contains(u, "bit") || strings.HasSuffix(unit, "b") && len(unit) > 1 {
		return ` (sizes count bytes, not bits: 10 Gbit/s is "1250MB/s")`
	}
	return ""
}
