package schema

import "testing"

func TestSchemaValidate(t *testing.T) {
	good := Schema{{Name: "a", Type: TypeString, Default: "x"}, {Name: "b", Type: TypeSize, Default: int64(1)}, {Name: "c", Type: TypeBool}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid schema: %v", err)
	}
	for _, bad := range []Schema{
		{{Name: "", Type: TypeString}},
		{{Name: "a", Type: TypeString}, {Name: "a", Type: TypeBool}},
		{{Name: "a", Type: 0}},
		{{Name: "a", Type: TypeNumber, Default: 3}},
		{{Name: "a", Type: TypeDuration, Default: "1s"}},
		{{Name: "a", Type: TypeBool, Default: "true"}},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed Validate", bad)
		}
	}
}
