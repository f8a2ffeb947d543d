package schema

import (
	"testing"
	"time"
)

// TestSchemaValidate: a default is a string, int64 or bool as
// Attribute.Default says per type (durations, sizes and addresses also as
// the job file writes them) and a valid value; anything else is refused.
func TestSchemaValidate(t *testing.T) {
	good := Schema{{Name: "a", Type: TypeString, Default: "x"}, {Name: "b", Type: TypeSize, Default: int64(1)}, {Name: "c", Type: TypeBool},
		{Name: "d", Type: TypeSize, Default: "64M"}, {Name: "e", Type: TypeDuration, Default: "1s"},
		{Name: "f", Type: TypeAddress, Default: "0x1000"}, {Name: "g", Type: TypeNumber, Default: int64(-1)},
		{Name: "h", Type: TypeBool, Default: false}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid schema: %v", err)
	}
	for _, bad := range []Schema{
		{{Name: "", Type: TypeString}},
		{{Name: "a", Type: TypeString}, {Name: "a", Type: TypeBool}},
		{{Name: "a", Type: 0}},
		{{Name: "a", Type: TypeNumber, Default: 3}},
		{{Name: "a", Type: TypeNumber, Default: "3"}},
		{{Name: "a", Type: TypeString, Default: int64(3)}},
		{{Name: "a", Type: TypeDuration, Default: time.Second}}, // does not cross gRPC
		{{Name: "a", Type: TypeDuration, Default: "soon"}},
		{{Name: "a", Type: TypeSize, Default: "64Q"}},
		{{Name: "a", Type: TypeSize, Default: int64(-1)}},
		{{Name: "a", Type: TypeBool, Default: "true"}},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed Validate", bad)
		}
	}
}
