package transport

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/ferryvm/ferry/framework"
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

// goType is the Go type Config holds for t, "" when t is invalid.
func (t AttrType) goType() string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber, TypeDuration, TypeSize:
		return "int64"
	case TypeBool:
		return "bool"
	}
	return ""
}

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindZero:
		return "zero"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Pages is the number of guest pages in ram (page indices run from 0 to
// Pages-1 across the regions in order).
func Pages(ram []RAMRegion) uint64 {
	var n uint64
	for _, r := range ram {
		n += r.Size / framework.PageSize
	}
	return n
}

// Check reports whether the run is valid for a guest of pages pages: a
// valid kind, at least one page, and every page inside RAM. Transports
// call it in SendPages (and on the destination for every run that
// arrives).
func (r PageRun) Check(pages uint64) error {
	end, carry := bits.Add64(r.First, r.Count, 0)
	switch {
	case r.Kind != KindData && r.Kind != KindZero:
		return fmt.Errorf("page run at %d: invalid kind %d", r.First, int(r.Kind))
	case r.Count == 0:
		return fmt.Errorf("page run at %d is empty", r.First)
	case carry != 0 || end > pages:
		return fmt.Errorf("page run %d+%d lies outside guest RAM (%d pages)", r.First, r.Count, pages)
	}
	return nil
}
