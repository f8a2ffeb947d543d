package plugintest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newMemfd makes an empty memfd, as a VMM backs guest RAM.
func newMemfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
