package tcp

import "golang.org/x/sys/unix"

// punchHole deallocates [off, off+n) of the file; reads then see zeros.
func punchHole(fd int, off, n int64) error {
	return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
