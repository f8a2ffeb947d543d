package job

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ferryvm/ferry/framework/schema"
)

// checkSchema reports the first mistake in a plugin's schema.
func checkSchema(sch []schema.Attribute) error {
	seen := map[string]bool{}
	for i, at := range sch {
		switch {
		case !hclsyntax.ValidIdentifier(at.Name):
			return fmt.Errorf("attribute %d has the name %q, which is not an HCL identifier", i, at.Name)
		case seen[at.Name]:
			return fmt.Errorf("attribute %q is described twice", at.Name)
		case at.Type < schema.TypeString || at.Type > schema.TypeAddress:
			return fmt.Errorf("attribute %q has the unknown type %d", at.Name, at.Type)
		case at.Required && at.Default != nil:
			return fmt.Errorf("attribute %q is required and has a default", at.Name)
		}
		seen[at.Name] = true
		if _, err := normalizeDefault(at); err != nil {
			return fmt.Errorf("attribute %q: default: %w", at.Name, err)
		}
	}
	return nil
}

// normalizeDefault converts at.Default to at's Config type. Durations,
// sizes and addresses may be given as strings ("10s", "1GiB",
// "0x1000000") or as int64.
func normalizeDefault(at schema.Attribute) (any, error) {
	switch d := at.Default.(type) {
	case nil:
		return nil, nil
	case string:
		switch at.Type {
		case schema.TypeString:
			return d, nil
		case schema.TypeDuration:
			v, err := ParseDuration(d)
			return int64(v), err
		case schema.TypeSize:
			v, err := ParseSize(d)
			return int64(v), err
		case schema.TypeAddress:
			v, err := ParseAddress(d)
			return int64(v), err
		}
	case bool:
		if at.Type == schema.TypeBool {
			return d, nil
		}
	case int:
		return normalizeDefault(schema.Attribute{Type: at.Type, Default: int64(d)})
	case time.Duration:
		if at.Type == schema.TypeDuration && d >= 0 {
			return int64(d), nil
		}
	case int64:
		switch {
		case at.Type == schema.TypeNumber:
			return d, nil
		case (at.Type == schema.TypeDuration || at.Type == schema.TypeSize || at.Type == schema.TypeAddress) && d >= 0:
			return d, nil
		}
	case uint64:
		if (at.Type == schema.TypeSize || at.Type == schema.TypeAddress) && d <= math.MaxInt64 {
			return int64(d), nil
		}
	}
	return nil, fmt.Errorf("%#v (%T) is not %s", at.Default, at.Default, typeName(at.Type))
}

// typeName describes a type for a diagnostic.
func typeName(t schema.AttrType) string {
	switch t {
	case schema.TypeString:
		return "a string"
	case schema.TypeNumber:
		return "a whole number"
	case schema.TypeBool:
		return "true or false"
	case schema.TypeDuration:
		return `a duration like "50ms"`
	case schema.TypeSize:
		return `a size like "512MiB"`
	case schema.TypeAddress:
		return `an address like "0x1000000" or "16M"`
	}
	return "of an unknown type"
}
