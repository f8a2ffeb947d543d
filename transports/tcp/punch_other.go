//go:build !linux

package tcp

import "errors"

// punchHole is Linux only; elsewhere zero runs are cleared.
func punchHole(fd int, off, n int64) error { return errors.ErrUnsupported }

// seekData is Linux only here; elsewhere zero runs are cleared.
func seekData(fd int, off int64) (int64, error) { return 0, errors.ErrUnsupported }
