package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// RAMFiles describes a layout to a transport of the given role: one
// *os.File per distinct descriptor (the caller closes them when the
// transport is done; the VMM's own descriptors stay open) and the regions
// referring to them by index. Hand the files to transport.Launch for an
// out-of-process transport; the engine passes the same order in
// OpenRequest.
//
// What a plugin can do to guest RAM follows what its side needs:
//   - RoleSend: each file is a new, read-only open of the VMM's file
//     (through /proc/self/fd). A sending transport or a hint provider only
//     reads guest RAM, and on the source that RAM is the guest's: before
//     the switch its running memory, in post-copy the only copy of the
//     pages not yet sent. A plugin that writes, punches or truncates
//     through its file by mistake gets EBADF or EINVAL, not a damaged
//     guest.
//   - RoleReceive: each file is a duplicate (the transport writes pages
//     and punches holes), and the VMM's file is sealed against shrinking
//     (F_SEAL_SHRINK) when it allows seals (a memfd created with
//     MFD_ALLOW_SEALING): a plugin that truncated it would kill the VMM
//     with SIGBUS at its next touch of guest RAM. ShrinkSealed reports
//     whether a file is protected so.
//
// This guards against a plugin's mistakes, not its malice: a plugin runs
// with the VMM's user, which may reopen a file through /proc for writing
// or write the VMM's memory through /proc/PID/mem. Keeping a hostile
// plugin out needs another user or a sandbox, which Ferry does not set up.
func RAMFiles(l framework.Layout, role transport.Role) ([]*os.File, []transport.RAMRegion, error) {
	if role != transport.RoleSend && role != transport.RoleReceive {
		return nil, nil, fmt.Errorf("guest RAM files for %v: want RoleSend or RoleReceive", role)
	}
	index := map[int]int{}
	var files []*os.File
	var ram []transport.RAMRegion
	for _, r := range l {
		i, ok := index[r.Fd]
		if !ok {
			f, err := ramFile(r.Fd, role, len(files))
			if err != nil {
				closeFiles(files)
				return nil, nil, err
			}
			i = len(files)
			index[r.Fd] = i
			files = append(files, f)
		}
		ram = append(ram, transport.RAMRegion{GPA: r.GPA, Size: r.Size, File: i, Offset: r.Offset})
	}
	return files, ram, nil
}

// ramFile is RAMFiles' file i for descriptor fd.
func ramFile(fd int, role transport.Role, i int) (*os.File, error) {
	if role == transport.RoleSend {
		ro, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open guest RAM fd %d read-only through /proc/self/fd: %w", fd, err)
		}
		return os.NewFile(uintptr(ro), fmt.Sprintf("guest-ram-%d (read-only)", i)), nil
	}
	// Best effort: a file that does not allow seals is reported by
	// ShrinkSealed, not refused (a VMM may back RAM with files of its own).
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK)
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("dup guest RAM fd %d: %w", fd, err)
	}
	unix.CloseOnExec(dup)
	return os.NewFile(uintptr(dup), fmt.Sprintf("guest-ram-%d", i)), nil
}

// ShrinkSealed reports whether f is sealed against shrinking, so that
// nobody holding it can truncate guest RAM under the VMM's mapping.
func ShrinkSealed(f *os.File) bool {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	return err == nil && seals&unix.F_SEAL_SHRINK != 0
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

// forgetHoles drops what the last answer said of holes and keeps its
// populated extent: a guest's writes since it was asked may have filled
// a hole, never emptied data (a punch does, which a pass does not watch
// for between two queries either: such a page is read, found zero, and
// goes as a zero run). A probe calls it (its dirty sync may show holes
// written since); dropping the whole answer there made the classifier's
// next query walk the populated extent again with SEEK_HOLE (on shmem a
// walk of every page in it, some 12 ms for 2 GiB populated) at every
// probe, every 500 ms (TestForgetHolesKeepsData).
func (h *holes) forgetHoles() {
	if h.valid && h.q < h.dataStart {
		h.q = h.dataStart // an offset below asks again; [dataStart, dataEnd) stays data
	}
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

// emptyRegions reports, for each region of l, whether its range of the
// RAM file holds no data at all: every page a hole (SEEK_DATA). A file
// whose holes cannot be told (SEEK_DATA unsupported) counts as not
// empty. It moves the offset of the VMM's descriptors, as holes does.
func emptyRegions(l framework.Layout) []bool {
	empty := make([]bool, len(l))
	for i, r := range l {
		h := holes{fd: r.Fd}
		hole, until := h.at(int64(r.Offset))
		empty[i] = hole && until >= int64(r.Offset+r.Size)
	}
	return empty
}

// filledSince reports whether a region of l that emptyRegions found
// empty (was) holds data now: something wrote into it since, whatever
// the writer reports about itself.
func filledSince(l framework.Layout, was []bool) bool {
	now := emptyRegions(l)
	for i := range was {
		if was[i] && !now[i] {
			return true
		}
	}
	return false
}
