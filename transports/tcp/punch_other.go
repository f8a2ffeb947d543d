//go:build !linux

package tcp

import "errors"

// punchHole is Linux only; elsewhere zero runs are cleared.
func punchHole(fd int, off, n int64) error { return errors.ErrUnsupported }
