package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Coerce checks a configuration that crossed a JSON boundary (numbers
// arrive as float64 or json.Number) against the schema and returns it
// typed as Config promises: strings, int64 (numbers, durations, sizes) and
// bools, with defaults filled in. Unknown or missing required attributes
// are errors wrapping ErrBadConfig.
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
	case TypeNumber, TypeDuration, TypeSize:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<62 {
				return int64(n), nil
			}
		case json.Number:
			if i, err := n.Int64(); err == nil {
				return i, nil
			}
		}
	default:
		return nil, fmt.Errorf("attribute %q has an invalid type %d in the schema", a.Name, a.Type)
	}
	return nil, fmt.Errorf("attribute %q: %v (%T) is not a %s", a.Name, v, v, a.Type)
}
