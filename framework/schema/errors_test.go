package schema

import (
	"errors"
	"fmt"
	"testing"
)

// TestErrBadConfigClass: every sentinel of the class matches every other
// under errors.Is, keeps its own text, and matches nothing else.
func TestErrBadConfigClass(t *testing.T) {
	mine := NewErrBadConfig("bad transport configuration")
	theirs := NewErrBadConfig("bad hint provider configuration")
	for _, c := range []struct {
		err, target error
	}{
		{fmt.Errorf("%w: x", ErrBadConfig), mine},
		{fmt.Errorf("%w: x", mine), ErrBadConfig},
		{fmt.Errorf("%w: x", mine), theirs},
		{fmt.Errorf("tcp: %w", fmt.Errorf("%w: x", theirs)), mine},
	} {
		if !errors.Is(c.err, c.target) {
			t.Errorf("errors.Is(%v, %v) = false", c.err, c.target)
		}
	}
	if errors.Is(errors.New("bad configuration"), ErrBadConfig) || errors.Is(ErrBadConfig, errors.ErrUnsupported) {
		t.Error("the class matches an unrelated error")
	}
	if got := fmt.Errorf("%w: x", mine).Error(); got != "bad transport configuration: x" {
		t.Errorf("text %q", got)
	}
}
