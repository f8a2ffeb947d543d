package plugintest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// CheckValidateBounds checks a host's bounds on a plugin's Validate
// answer, the same for both plugin kinds: validate asks a plugin that
// answers Validate with answer, whatever it is asked (a plugin in any
// language, not built with framework/internal/schemaconv), and returns
// what the host's Validate returned. An answer of 5 × schema.MaxProblems
// problems comes back as exactly MaxProblems joined problems of class
// badConfig, the last counting the rest ("and 4001 more problems"); an
// answer of 2 MiB is an error of the call, not problems, and short.
func CheckValidateBounds(t *testing.T, badConfig error, validate func(answer *schemapb.ValidateResponse) error) {
	t.Helper()
	many := &schemapb.ValidateResponse{}
	for range 5 * schema.MaxProblems {
		many.Problems = append(many.Problems, &schemapb.ConfigProblem{Attribute: "streams", Message: "no"})
	}
	err := validate(many)
	held := joined(err)
	if len(held) != schema.MaxProblems || !errors.Is(err, badConfig) {
		t.Fatalf("%d problems came back as %d errors (bad config: %v); want %d", len(many.Problems), len(held), errors.Is(err, badConfig), schema.MaxProblems)
	}
	want := schema.Problem{Message: fmt.Sprintf("and %d more problems", 4*schema.MaxProblems+1)}
	if got := schema.Problems(err); got[len(got)-1] != want {
		t.Errorf("the last of %d problems is %+v; want %+v", len(got), got[len(got)-1], want)
	}
	huge := &schemapb.ValidateResponse{Problems: []*schemapb.ConfigProblem{{Attribute: "streams", Message: strings.Repeat("x", 2<<20)}}}
	err = validate(huge)
	if err == nil || errors.Is(err, badConfig) || len(err.Error()) > 1<<10 {
		t.Errorf("an answer of 2 MiB: %.200v (%d bytes), want an error of the call, not its problems", err, len(fmt.Sprint(err)))
	}
}

// joined is the errors err joins (errors.Join), or err alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// CheckValidateServed checks a Go plugin's end of Validate, the same for
// both plugin kinds (schemaconv.ServeValidate): validate serves, over
// gRPC, a plugin whose Validate returns problems, asks it, and returns
// what the host's Validate returned. The plugin sends no more than the
// host takes, in number and in bytes, and counts what it cut: 5 ×
// schema.MaxProblems short problems come back as MaxProblems-1 and "and
// 4001 more problems"; MaxProblems problems of 2 KiB each (2 MiB, twice
// the host's bound) as the problems that fit, the last counting the rest,
// not as an error of the call. Text that is not UTF-8 comes back with
// U+FFFD for each run of bad bytes, counted at the size it is sent
// (MaxProblems problems of 600 bytes, each bad byte then 3, are cut),
// not as an error of the call; an error that joins nothing (its
// Unwrap() []error empty) as one problem of its text, not as none.
func CheckValidateServed(t *testing.T, badConfig error, validate func(problems error) error) {
	t.Helper()
	checkServedBounds(t, badConfig, validate)
	for _, c := range []struct {
		name     string
		problems error
		want     schema.Problem
	}{
		{"a problem not UTF-8", schema.Problemf("str\xffeams", "no \xff\xfe and %s", "\xc3"), schema.Problem{Attribute: "str\uFFFDeams", Message: "no \uFFFD and \uFFFD"}},
		{"an error that joins nothing", noneJoined{"nothing is \xffjoined"}, schema.Problem{Message: "nothing is \uFFFDjoined"}},
	} {
		err := validate(c.problems)
		got := schema.Problems(err)
		if !errors.Is(err, badConfig) || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s came back as %q (bad config: %v), %d problems; want the one problem %q", c.name, err, errors.Is(err, badConfig), len(got), c.want)
		}
	}
}

// noneJoined is an error whose Unwrap() []error holds nothing.
type noneJoined struct{ text string }

func (e noneJoined) Error() string { return e.text }
func (noneJoined) Unwrap() []error { return nil }

// checkServedBounds is CheckValidateServed's check of the bounds.
func checkServedBounds(t *testing.T, badConfig error, validate func(problems error) error) {
	t.Helper()
	for _, c := range []struct {
		name    string
		n       int
		message string
	}{
		{"5000 short problems", 5 * schema.MaxProblems, "no"},
		{"1000 problems of 2 KiB", schema.MaxProblems, strings.Repeat("x", 2<<10)},
		{"1000 problems of 600 bytes, half not UTF-8", schema.MaxProblems, strings.Repeat("\xffa", 300)},
	} {
		var problems []error
		for i := range c.n {
			problems = append(problems, schema.Problemf("streams", "%d: %s", i, c.message))
		}
		err := validate(errors.Join(problems...))
		got := schema.Problems(err)
		if !errors.Is(err, badConfig) || len(joined(err)) != len(got) || len(got) < 2 || len(got) > schema.MaxProblems {
			t.Errorf("%s came back as %d errors, %d problems (bad config: %v): %.200v; want at most %d problems", c.name, len(joined(err)), len(got), errors.Is(err, badConfig), err, schema.MaxProblems)
			continue
		}
		kept := got[:len(got)-1]
		for i, p := range kept {
			sent := strings.ToValidUTF8(fmt.Sprintf("%d: %s", i, c.message), "\uFFFD")
			if want := (schema.Problem{Attribute: "streams", Message: sent}); p != want {
				t.Errorf("%s: problem %d is %.100v; want %.100v", c.name, i, p, want)
				break
			}
		}
		if want := *schema.MoreProblems(c.n - len(kept)); got[len(got)-1] != want {
			t.Errorf("%s: the last of %d problems is %+v; want %+v", c.name, len(got), got[len(got)-1], want)
		}
	}
}
