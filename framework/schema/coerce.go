package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"
	"time"
)

// Coerce checks a configuration that crossed a JSON boundary (numbers
// arrive as float64 or json.Number) or was written by hand against the
// schema and returns it typed as Config promises: strings, int64
// (numbers, durations, sizes, addresses) and bools, with defaults filled
// in. It takes each value as Config holds it, and also:
//
//	TypeNumber                 int, uint64, a whole float64, json.Number, or a string
//	                           as the job file reads one ("2", "1e3": base 10, whole)
//	TypeBool                   "true" or "1", "false" or "0", as the job file reads them
//	TypeDuration               a string ("300ms", ParseDuration), a time.Duration, integers as for TypeNumber
//	TypeSize, TypeAddress      a string ("1MiB", "0x1000000": ParseSize, ParseAddress), integers as above
//
// A TypeString attribute takes a string only (a job file's
// `name = 2` reaches Coerce as "2" from framework/job, not as a number).
// Durations, sizes and addresses are never negative. Unknown or missing
// required attributes and values that do not fit are errors wrapping
// ErrBadConfig, all of them in one error.
func Coerce(schema Schema, in map[string]any) (Config, error) {
	byName := map[string]Attribute{}
	for _, a := range schema {
		byName[a.Name] = a
	}
	out := Config{}
	var errs []string
	for k, v := range in {
		a, ok := byName[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("unknown attribute %q", k))
			continue
		}
		c, err := coerceValue(a, v)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out[k] = c
	}
	for _, a := range schema {
		if _, ok := out[a.Name]; ok {
			continue
		}
		switch {
		case a.Default != nil:
			c, err := coerceValue(a, a.Default)
			if err != nil {
				errs = append(errs, "default: "+err.Error())
				continue
			}
			out[a.Name] = c
		case a.Required:
			errs = append(errs, fmt.Sprintf("missing required attribute %q", a.Name))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("%w: %s", ErrBadConfig, strings.Join(errs, "; "))
	}
	return out, nil
}

func coerceValue(a Attribute, v any) (any, error) {
	switch a.Type {
	case TypeString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case TypeBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string: // as the job file reads a string (HCL's conversion)
			if b == "true" || b == "1" || b == "false" || b == "0" {
				return b == "true" || b == "1", nil
			}
		}
	case TypeNumber, TypeDuration, TypeSize, TypeAddress:
		if s, ok := v.(string); ok && a.Type != TypeNumber {
			return parseUnit(a, s)
		}
		if s, ok := v.(string); ok {
			return parseNumber(a, s)
		}
		if d, ok := v.(time.Duration); ok && a.Type == TypeDuration {
			v = int64(d)
		}
		n, ok := integer(v)
		switch {
		case ok && n < 0 && a.Type != TypeNumber:
			return nil, fmt.Errorf("attribute %q: %d is negative: a %s is never", a.Name, n, a.Type)
		case ok:
			return n, nil
		}
	default:
		return nil, fmt.Errorf("attribute %q has an invalid type %d in the schema", a.Name, a.Type)
	}
	return nil, fmt.Errorf("attribute %q: %v (%T) is not a %s", a.Name, v, v, a.Type)
}

// integer converts the Go types a number arrives as to int64.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		return int64(n), n == math.Trunc(n) && math.Abs(n) < 1<<62
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// parseNumber reads a whole number written as a string, as the job file
// reads one (HCL's string-to-number conversion: base 10, any float
// notation, then whole and within int64).
func parseNumber(a Attribute, s string) (any, error) {
	f, _, err := big.ParseFloat(s, 10, 512, big.ToNearestEven)
	if err != nil {
		return nil, fmt.Errorf("attribute %q: %q is not a number", a.Name, s)
	}
	n, acc := f.Int64()
	if !f.IsInt() || acc != big.Exact {
		return nil, fmt.Errorf("attribute %q: %s is not a whole number within int64", a.Name, s)
	}
	return n, nil
}

// parseUnit reads a duration, size or address written as in a job file.
func parseUnit(a Attribute, s string) (any, error) {
	var n uint64
	var err error
	switch a.Type {
	case TypeDuration:
		var d time.Duration
		d, err = ParseDuration(s)
		n = uint64(d)
	case TypeSize:
		n, err = ParseSize(s)
	case TypeAddress:
		n, err = ParseAddress(s)
	}
	if err != nil {
		return nil, fmt.Errorf("attribute %q: %v", a.Name, err)
	}
	return int64(n), nil
}
