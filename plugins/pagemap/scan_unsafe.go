//go:build linux && (amd64 || arm64 || s390x || riscv64 || loong64)

package pagemap

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

// PAGEMAP_SCAN (Linux 6.7+, include/uapi/linux/fs.h): an ioctl on
// /proc/PID/pagemap that returns page ranges by category instead of one
// entry per page. _IOWR('f', 16, struct pm_scan_arg) in the generic ioctl
// encoding these architectures share.
const pagemapScan = 0xc0606610

// Page categories (PAGE_IS_*).
const (
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
	pageIsGuard   = 1 << 8 // Linux 6.15+; older kernels refuse the bit with EINVAL
)

// pmScanArg is struct pm_scan_arg (96 bytes).
type pmScanArg struct {
	size, flags, start, end, walkEnd uint64
	vec                              *pageRegion // a Go pointer: the GC keeps it alive and up to date
	vecLen, maxPages                 uint64
	categoryInverted, categoryMask   uint64
	categoryAnyofMask, returnMask    uint64
}

// pageRegion is struct page_region (24 bytes).
type pageRegion struct {
	//lint:ignore U1000 the kernel's layout: it fills categories, which the scan asks for by mask and does not read
	start, end, categories uint64
}

// The kernel checks arg.size; catch a layout mistake at compile time.
var _ [96]byte = [unsafe.Sizeof(pmScanArg{})]byte{}
var _ [24]byte = [unsafe.Sizeof(pageRegion{})]byte{}

// errScanUnsupported says the kernel has no PAGEMAP_SCAN.
var errScanUnsupported = errors.New("PAGEMAP_SCAN is not supported by this kernel")

// scanner runs PAGEMAP_SCAN on an open pagemap file.
type scanner struct {
	fd   int
	cats uint64
	vec  []pageRegion // heap-allocated once; the kernel writes it
}

func newScanner(fd int) *scanner {
	return &scanner{fd: fd, cats: pageIsPresent | pageIsSwapped | pageIsGuard, vec: make([]pageRegion, 4096)}
}

// populated returns the runs of pages in [first, first+count) (page
// numbers relative to base) that have a present page, a swap entry or a
// guard marker in the page tables.
func (s *scanner) populated(ctx context.Context, base, first, count uint64) ([]hint.Range, error) {
	var out []hint.Range
	start, end := base+first*pageSize, base+(first+count)*pageSize
	for start < end {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		arg := pmScanArg{size: uint64(unsafe.Sizeof(pmScanArg{})), start: start, end: end,
			vec: unsafe.SliceData(s.vec), vecLen: uint64(len(s.vec)),
			categoryAnyofMask: s.cats, returnMask: s.cats}
		// The pointer is converted inside the syscall expression, so arg
		// stays alive and unmoved for the duration of the call.
		n, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), pagemapScan, uintptr(unsafe.Pointer(&arg)))
		switch {
		case errno == unix.EINVAL && s.cats&pageIsGuard != 0:
			s.cats &^= pageIsGuard // a kernel before 6.15: no guard regions to report
			continue
		case errno == unix.ENOTTY || errno == unix.EINVAL:
			return nil, fmt.Errorf("%w (%v)", errScanUnsupported, errno)
		case errno != 0:
			return nil, fmt.Errorf("pagemap: PAGEMAP_SCAN %#x-%#x: %w", start, end, errno)
		}
		for _, r := range s.vec[:min(int(n), len(s.vec))] {
			// Round outwards: a vetoed page too many costs a hint, never safety.
			lo := (max(r.start, base+first*pageSize) - base) / pageSize
			hi := (min(r.end, end) - base + pageSize - 1) / pageSize
			if hi > lo {
				out = append(out, hint.Range{First: lo, Count: hi - lo})
			}
		}
		if arg.walkEnd <= start || arg.walkEnd > end {
			return nil, fmt.Errorf("pagemap: PAGEMAP_SCAN %#x-%#x stopped at %#x", start, end, arg.walkEnd)
		}
		// Linux 6.18 was seen returning regions past walk_end when the
		// vector filled up; the next call, from walk_end as documented,
		// reports them again, and merge joins the two answers.
		start = arg.walkEnd
	}
	return merge(out), nil
}
