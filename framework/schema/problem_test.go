package schema

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestProblems(t *testing.T) {
	err := errors.Join(
		Problemf("max_gpa", "must be above min_gpa (%#x)", 0x1000),
		fmt.Errorf("mode: %w", Problemf("mode", "want fast or exact")),
		errors.New("the block as a whole"),
		nil,
	)
	want := []Problem{
		{"max_gpa", "must be above min_gpa (0x1000)"},
		{"mode", "mode: mode: want fast or exact"},
		{"", "the block as a whole"},
	}
	if got := Problems(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Problems = %+v, want %+v", got, want)
	}
	if Problems(nil) != nil {
		t.Error("nil has problems")
	}
	if !errors.Is(Problemf("a", "b"), ErrBadConfig) {
		t.Error("a Problem is not ErrBadConfig")
	}
}
