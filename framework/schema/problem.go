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

// Problems flattens err (errors.Join trees and wrapped errors) into its
// problems: each *Problem as it is, any other error as a problem of the
// whole block. nil gives none.
func Problems(err error) []Problem {
	var out []Problem
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) >= MaxProblems {
			return
		}
		var p *Problem
		switch j := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &p) && p.Error() == e.Error() {
			out = append(out, *p)
			return
		}
		if errors.As(e, &p) {
			out = append(out, Problem{Attribute: p.Attribute, Message: e.Error()})
			return
		}
		out = append(out, Problem{Message: e.Error()})
	}
	walk(err)
	return out
}
