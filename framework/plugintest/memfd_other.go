//go:build !linux

package plugintest

import (
	"fmt"
	"os"
)

// newMemfd makes an empty, already unlinked temporary file: there is no
// memfd off Linux. Ferry's hosts run on Linux only; this lets a plugin
// author run the conformance suites elsewhere. Unlike a memfd, the file
// lives in the temporary directory's file system (what a plugin learns
// from it, such as holes, may differ from a host's).
func newMemfd(name string) (*os.File, error) {
	f, err := os.CreateTemp("", name)
	if err != nil {
		return nil, fmt.Errorf("guest RAM file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("guest RAM file: %w", err)
	}
	return f, nil
}
