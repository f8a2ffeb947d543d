package schema

import (
	"errors"
	"fmt"
)

// Validate reports whether a schema is well formed: every attribute has a
// unique, non-empty name and a valid type, and its default, if any, is of
// a Go type Attribute.Default allows for that type and is a valid value.
func (s Schema) Validate() error {
	seen := map[string]bool{}
	var errs []error
	for i, a := range s {
		switch {
		case a.Name == "":
			errs = append(errs, fmt.Errorf("attribute %d has no name", i))
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("attribute %q appears twice", a.Name))
		}
		seen[a.Name] = true
		if a.Type.defaultTypes() == "" {
			errs = append(errs, fmt.Errorf("attribute %q has an invalid type %d", a.Name, int(a.Type)))
			continue
		}
		if a.Default != nil {
			if err := checkDefault(a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkDefault checks a.Default against Attribute.Default's rule.
func checkDefault(a Attribute) error {
	var ok bool
	switch a.Default.(type) {
	case string:
		ok = a.Type != TypeNumber && a.Type != TypeBool
	case int64:
		ok = a.Type != TypeString && a.Type != TypeBool
	case bool:
		ok = a.Type == TypeBool
	}
	if !ok {
		return fmt.Errorf("attribute %q: default %v is a %T, want %s", a.Name, a.Default, a.Default, a.Type.defaultTypes())
	}
	if _, err := coerceValue(a, a.Default); err != nil {
		return fmt.Errorf("default: %w", err)
	}
	return nil
}
