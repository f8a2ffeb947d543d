package schema

import (
	"errors"
	"fmt"
)

// Problem is one objection a plugin raises against a block that fits its
// schema: a relation between attributes, a value outside an enumeration
// or a range. Attribute names the attribute the job file should be
// pointed at ("" for the block as a whole). A Problem is of the
// ErrBadConfig class.
//
//	return errors.Join(
//		schema.Problemf("max_gpa", "must be above min_gpa (%#x)", lo),
//		schema.Problemf("mode", `want "fast" or "exact", not %q`, mode))
type Problem struct {
	Attribute string
	Message   string
}

// Problemf returns a *Problem about attr.
func Problemf(attr, format string, args ...any) *Problem {
	return &Problem{Attribute: attr, Message: fmt.Sprintf(format, args...)}
}

func (p *Problem) Error() string {
	if p.Attribute == "" {
		return p.Message
	}
	return p.Attribute + ": " + p.Message
}

// Is makes every Problem an ErrBadConfig.
func (p *Problem) Is(target error) bool { return errors.Is(ErrBadConfig, target) }

// MaxProblems bounds the problems one validation reports: a list of more
// keeps the first MaxProblems-1 and ends with MoreProblems counting the
// rest (Bound), so it says how many it left out.
const MaxProblems = 1000

// MoreProblems is the problem that ends a list cut short (at MaxProblems,
// or at a plugin answer's size): it counts the n problems not kept.
func MoreProblems(n int) *Problem {
	return Problemf("", "and %d more problems", n)
}

// Bound is the one rule that cuts a list of problems at MaxProblems:
// kept, the first problems of a list of total (at least MaxProblems-1 of
// them, or all total), as reported. When total is at most MaxProblems it
// is kept itself; otherwise its first MaxProblems-1 and, last,
// MoreProblems(total-(MaxProblems-1)). A kept shorter than MaxProblems-1
// of a longer list is kept whole, the last counting all the rest
// (TestBoundFewKept). It may reuse kept's array. What it cannot do: tell
// a problem that already counts others (a MoreProblems from a plugin's
// answer) from any other, so such a problem cut away counts as one.
func Bound(kept []Problem, total int) []Problem {
	if total <= MaxProblems {
		return kept
	}
	n := min(len(kept), MaxProblems-1)
	return append(kept[:n], *MoreProblems(total - n))
}

// Problems flattens err (errors.Join trees and wrapped errors) into its
// problems: each *Problem as it is, any other error as a problem of the
// whole block. nil gives none; any other error at least one (an error
// whose Unwrap() []error holds no error is a problem of its text, not
// none). It reports at most MaxProblems, cut by Bound: of more, the
// first MaxProblems-1 and a last problem counting the rest ("and N more
// problems"); CountProblems counts them all. It walks the whole of err
// to count.
func Problems(err error) []Problem {
	var out []Problem
	total := 0
	eachProblem(err, func(e error) bool {
		if total < MaxProblems {
			out = append(out, problemOf(e))
		}
		total++
		return true
	})
	return Bound(out, total)
}

// CountProblems is the number of problems in err, as Problems flattens
// it but not bounded by MaxProblems.
func CountProblems(err error) int {
	n := 0
	eachProblem(err, func(error) bool { n++; return true })
	return n
}

// eachProblem calls yield with each error of err's errors.Join trees
// that joins no error, in order, until yield returns false.
func eachProblem(err error, yield func(error) bool) {
	var walk func(error) bool
	walk = func(e error) bool {
		if e == nil {
			return true
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok && joinsAny(j.Unwrap()) {
			for _, x := range j.Unwrap() {
				if !walk(x) {
					return false
				}
			}
			return true
		}
		return yield(e)
	}
	walk(err)
}

// joinsAny says whether errs holds an error (a join of none, or of only
// nils, is a problem of its own text).
func joinsAny(errs []error) bool {
	for _, e := range errs {
		if e != nil {
			return true
		}
	}
	return false
}

// problemOf is the problem e, an error of no join, stands for.
func problemOf(e error) Problem {
	var p *Problem
	if errors.As(e, &p) && p.Error() == e.Error() {
		return *p
	}
	if errors.As(e, &p) {
		return Problem{Attribute: p.Attribute, Message: e.Error()}
	}
	return Problem{Message: e.Error()}
}
