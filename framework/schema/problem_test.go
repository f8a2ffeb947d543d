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
	if got, want := Problems(noneJoined{}), []Problem{{"", "joins none"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Problems of a join of none = %+v, want %+v", got, want)
	}
	if got := Problems(errors.Join(Problemf("a", "b"), noneJoined{nil})); len(got) != 2 || CountProblems(noneJoined{[]error{nil}}) != 1 {
		t.Errorf("a join of none or of nil, joined: %+v; want 2 problems, and 1 counted alone", got)
	}
	if Problems(nil) != nil {
		t.Error("nil has problems")
	}
	if !errors.Is(Problemf("a", "b"), ErrBadConfig) {
		t.Error("a Problem is not ErrBadConfig")
	}
}

// TestCountProblems: CountProblems counts what Problems lists, past
// MaxProblems, where Problems cuts (TestProblemsCut).
func TestCountProblems(t *testing.T) {
	var errs []error
	for range MaxProblems + 7 {
		errs = append(errs, Problemf("x", "no"), nil)
	}
	err := errors.Join(errors.Join(errs...), errors.New("whole"))
	if n, listed := CountProblems(err), len(Problems(err)); n != MaxProblems+8 || listed != MaxProblems {
		t.Errorf("CountProblems = %d, Problems lists %d; want %d and %d", n, listed, MaxProblems+8, MaxProblems)
	}
	if CountProblems(nil) != 0 || CountProblems(errors.New("one")) != 1 {
		t.Error("nil or one error miscounted")
	}
	if got := MoreProblems(3); got.Attribute != "" || got.Message != "and 3 more problems" {
		t.Errorf("MoreProblems(3) = %+v", got)
	}
}

// TestProblemsCut: Problems of more than MaxProblems keeps the first
// MaxProblems-1 in order and ends with the count of the rest (Bound), as
// a plugin's answer over gRPC does (schemaconv); of MaxProblems or fewer
// it keeps them all. Before, it kept the first MaxProblems and dropped
// the rest without a word.
func TestProblemsCut(t *testing.T) {
	for _, c := range []struct {
		n, kept int
		more    string // the last problem's message when cut
	}{
		{0, 0, ""},
		{MaxProblems - 1, MaxProblems - 1, ""},
		{MaxProblems, MaxProblems, ""},
		{MaxProblems + 1, MaxProblems - 1, "and 2 more problems"},
		{5 * MaxProblems, MaxProblems - 1, fmt.Sprintf("and %d more problems", 4*MaxProblems+1)},
	} {
		var errs []error
		for i := range c.n {
			errs = append(errs, Problemf("x", "%d", i))
		}
		got := Problems(errors.Join(errs...))
		want := c.kept
		if c.more != "" {
			want++
		}
		if len(got) != want {
			t.Errorf("%d problems: Problems lists %d; want %d", c.n, len(got), want)
			continue
		}
		for i, p := range got[:c.kept] {
			if p != (Problem{Attribute: "x", Message: fmt.Sprint(i)}) {
				t.Errorf("%d problems: problem %d is %+v; want x: %d", c.n, i, p, i)
				break
			}
		}
		if c.more != "" && got[len(got)-1] != (Problem{Message: c.more}) {
			t.Errorf("%d problems: the last is %+v; want %q", c.n, got[len(got)-1], c.more)
		}
	}
}

// noneJoined is an error whose Unwrap() []error holds no error.
type noneJoined struct{ errs []error }

func (noneJoined) Error() string     { return "joins none" }
func (e noneJoined) Unwrap() []error { return e.errs }

// TestBoundFewKept: Bound given fewer than MaxProblems-1 problems of a
// list of more than MaxProblems (a caller that kept fewer than its doc
// asks) keeps those it was given and counts all the rest, rather than
// panicking (kept's array too short) or listing zero Problems from
// beyond kept's length (kept's array long enough).
func TestBoundFewKept(t *testing.T) {
	for _, c := range []struct {
		name string
		kept []Problem
	}{
		{"an array of its own length", []Problem{{"a", "1"}, {"b", "2"}}},
		{"an array of MaxProblems", append(make([]Problem, 0, MaxProblems), Problem{"a", "1"}, Problem{"b", "2"})},
	} {
		var got []Problem
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: Bound panicked: %v", c.name, r)
				}
			}()
			got = Bound(c.kept, 5000)
		}()
		want := []Problem{{"a", "1"}, {"b", "2"}, *MoreProblems(4998)}
		if got != nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Bound of 2 kept of 5000 = %d problems, the last %+v; want %+v", c.name, len(got), got[len(got)-1], want)
		}
	}
}
