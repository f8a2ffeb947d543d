package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Coerce checks a configuration that crossed a JSON boundary (numbers
// arrive as float64 or json.Number) or was written by hand against the
// schema and returns it typed as Config promises: strings, int64
// (numbers, durations, sizes, addresses) and bools, with defaults filled
// in. Durations, sizes and addresses may also be given as the job file
// writes them ("300ms", "1MiB", "0x1000000"; ParseDuration, ParseSize,
// ParseAddress); durations as a time.Duration. Unknown or missing
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
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case TypeNumber, TypeDuration, TypeSize, TypeAddress:
		if s, ok := v.(string); ok && a.Type != TypeNumber {
			return parseUnit(a, s)
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
