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

// MaxProblems bounds the problems one validation reports.
const MaxProblems = 1000

// MoreProblems is the problem that ends a list cut short (at MaxProblems,
// or at a plugin answer's size): it counts the n problems not kept.
func MoreProblems(n int) *Problem {
	return Problemf("", "and %d more problems", n)
}

// Problems flattens err (errors.Join trees and wrapped errors) into its
// problems: each *Problem as it is, any other error as a problem of the
// whole block. nil gives none; any other error at least one (an error
// whose Unwrap() []error holds no error is a problem of its text, not
// none). It keeps the first MaxProblems and drops
// the rest without a count; CountProblems counts them all.
func Problems(err error) []Problem {
	var out []Problem
	eachProblem(err, func(e error) bool {
		out = append(out, problemOf(e))
		return len(out) < MaxProblems
	})
	return out
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
