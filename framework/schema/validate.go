package schema

import (
	"errors"
	"fmt"
)

// Validate reports whether a schema is well formed: every attribute has a
// unique, non-empty name and a valid type, and its default, if any, has
// the Go type Config uses for that type (string, int64 or bool).
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
		want := a.Type.goType()
		if want == "" {
			errs = append(errs, fmt.Errorf("attribute %q has an invalid type %d", a.Name, int(a.Type)))
			continue
		}
		if a.Default != nil && fmt.Sprintf("%T", a.Default) != want {
			errs = append(errs, fmt.Errorf("attribute %q: default %v is a %T, want %s", a.Name, a.Default, a.Default, want))
		}
	}
	return errors.Join(errs...)
}
