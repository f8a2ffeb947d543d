package loopback

import (
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// ram is guest RAM as the transport reaches it: the regions' files, read
// and written with pread/pwrite at page granularity.
type ram struct {
	regions []transport.RAMRegion
	files   []*os.File
	starts  []uint64 // first page index of each region
	pages   uint64
	punch   bool // zero pages by punching holes instead of writing zeros
}

func newRAM(req transport.OpenRequest, punch bool) (*ram, error) {
	if len(req.RAM) > maxRegions {
		return nil, fmt.Errorf("%w: %d RAM regions (limit %d)", transport.ErrBadConfig, len(req.RAM), maxRegions)
	}
	r := &ram{regions: req.RAM, files: req.Files, punch: punch}
	for i, g := range req.RAM {
		const p = framework.PageSize
		if g.Size == 0 || g.Size%p != 0 || g.GPA%p != 0 || g.Offset%p != 0 {
			return nil, fmt.Errorf("%w: RAM region %d (%#x+%#x at %#x) is not page-aligned", transport.ErrBadConfig, i, g.GPA, g.Size, g.Offset)
		}
		if g.File < 0 || g.File >= len(req.Files) || req.Files[g.File] == nil {
			return nil, fmt.Errorf("%w: RAM region %d uses file %d of %d", transport.ErrBadConfig, i, g.File, len(req.Files))
		}
		fi, err := req.Files[g.File].Stat()
		if err != nil {
			return nil, fmt.Errorf("%w: RAM region %d: %v", transport.ErrBadConfig, i, err)
		}
		if uint64(fi.Size()) < g.Offset+g.Size {
			return nil, fmt.Errorf("%w: RAM region %d ends at %#x of a %#x-byte file", transport.ErrBadConfig, i, g.Offset+g.Size, fi.Size())
		}
		r.starts = append(r.starts, r.pages)
		r.pages += g.Size / p
	}
	return r, nil
}

// each calls fn for the pieces of pages [first, first+count) that lie in
// one region each: the file and byte offset there, and how many pages.
// The run must have passed PageRun.Check.
func (r *ram) each(first, count uint64, fn func(f *os.File, off int64, n uint64) error) error {
	i := sort.Search(len(r.starts), func(i int) bool { return r.starts[i] > first }) - 1
	for count > 0 {
		g := r.regions[i]
		in := first - r.starts[i]
		n := min(count, g.Size/framework.PageSize-in)
		if err := fn(r.files[g.File], int64(g.Offset+in*framework.PageSize), n); err != nil {
			return err
		}
		first, count, i = first+n, count-n, i+1
	}
	return nil
}

// read fills dst (whole pages) from page first on.
func (r *ram) read(first uint64, dst []byte) error {
	return r.each(first, uint64(len(dst))/framework.PageSize, func(f *os.File, off int64, n uint64) error {
		b := n * framework.PageSize
		if _, err := f.ReadAt(dst[:b], off); err != nil {
			return fmt.Errorf("read guest RAM: %w", err)
		}
		dst = dst[b:]
		return nil
	})
}

// write stores src (whole pages) from page first on.
func (r *ram) write(first uint64, src []byte) error {
	return r.each(first, uint64(len(src))/framework.PageSize, func(f *os.File, off int64, n uint64) error {
		b := n * framework.PageSize
		if _, err := f.WriteAt(src[:b], off); err != nil {
			return fmt.Errorf("write guest RAM: %w", err)
		}
		src = src[b:]
		return nil
	})
}

var zeros = make([]byte, pagesPerFrame*framework.PageSize)

// zero clears count pages from page first on.
func (r *ram) zero(first, count uint64) error {
	return r.each(first, count, func(f *os.File, off int64, n uint64) error {
		b := int64(n * framework.PageSize)
		if r.punch {
			return punch(f, off, b)
		}
		for b > 0 {
			c := min(b, int64(len(zeros)))
			if _, err := f.WriteAt(zeros[:c], off); err != nil {
				return fmt.Errorf("zero guest RAM: %w", err)
			}
			off, b = off+c, b-c
		}
		return nil
	})
}

// punch deallocates [off, off+n) of f, which then reads as zeros.
func punch(f *os.File, off, n int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("punch guest RAM: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}); err != nil {
		return fmt.Errorf("punch guest RAM: %w", err)
	}
	if ferr != nil {
		return fmt.Errorf("punch guest RAM: %w", ferr)
	}
	return nil
}
