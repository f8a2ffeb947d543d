package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// RAMFiles describes a layout to a transport: one duplicated *os.File per
// distinct descriptor (the caller closes them when the transport is done;
// the VMM's own descriptors stay open) and the regions referring to them
// by index. Hand the files to transport.Launch for an out-of-process
// transport; the engine passes the same order in OpenRequest.
func RAMFiles(l framework.Layout) ([]*os.File, []transport.RAMRegion, error) {
	index := map[int]int{}
	var files []*os.File
	var ram []transport.RAMRegion
	for _, r := range l {
		i, ok := index[r.Fd]
		if !ok {
			fd, err := unix.Dup(r.Fd)
			if err != nil {
				for _, f := range files {
					f.Close()
				}
				return nil, nil, fmt.Errorf("dup guest RAM fd %d: %w", r.Fd, err)
			}
			unix.CloseOnExec(fd)
			i = len(files)
			index[r.Fd] = i
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("guest-ram-%d", i)))
		}
		ram = append(ram, transport.RAMRegion{GPA: r.GPA, Size: r.Size, File: i, Offset: r.Offset})
	}
	return files, ram, nil
}

// holes finds unpopulated (all-zero) ranges of a memory file with
// SEEK_DATA/SEEK_HOLE. One query at offset q answers for [q, dataEnd):
// [q, dataStart) is a hole, [dataStart, dataEnd) is populated. Passes walk
// pages in increasing order, so a query serves many pages.
type holes struct {
	fd                    int
	q, dataStart, dataEnd int64
	valid                 bool
	broken                bool // SEEK_DATA unsupported: treat everything as data
}

// hole reports whether the page at file offset off is in a hole. A page
// that is not in a hole may still be zero.
func (h *holes) hole(off int64) bool {
	if h.broken {
		return false
	}
	if !h.valid || off < h.q || off >= h.dataEnd {
		h.refresh(off)
		if h.broken {
			return false
		}
	}
	return off < h.dataStart
}

// at reports whether file offset off is in a hole and the offset where
// that answer ends (the next data, or the end of the populated extent);
// 1<<62 stands for "the end of the file". One query serves an extent.
func (h *holes) at(off int64) (hole bool, until int64) {
	if h.broken {
		return false, 1 << 62
	}
	if !h.valid || off < h.q || off >= h.dataEnd {
		h.refresh(off)
		if h.broken {
			return false, 1 << 62
		}
	}
	if off < h.dataStart {
		return true, h.dataStart
	}
	return false, h.dataEnd
}

func (h *holes) refresh(off int64) {
	h.q, h.valid = off, true
	d, err := unix.Seek(h.fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO: // no data from off to the end
		h.dataStart, h.dataEnd = 1<<62, 1<<62
		return
	case err != nil:
		h.broken = true
		return
	}
	e, err := unix.Seek(h.fd, d, unix.SEEK_HOLE)
	if err != nil {
		h.broken = true
		return
	}
	h.dataStart, h.dataEnd = d, e
}
