package session

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
)

// checkRAM reports how got, the RAM of the VM given to Send or Receive,
// differs from the layout given to Open, whose files the transport
// plugin and the hint providers hold: the number of regions, then each
// region's GPA, Size and Offset, and its file. A file is the same when
// its device and inode are (fstat), so a duplicate of Open's descriptor
// passes, and another file behind Open's descriptor number (closed and
// reused since) does not. The engine would otherwise walk got while the
// plugins read or write Open's files: pages of one VM sent or written
// as another's.
//
// Open's side of the comparison is s.fileIDs, taken by Open: checkRAM
// touches none of the session's files, which a Close on another
// goroutine may be closing (Close is safe from any goroutine).
//
// What it cannot check: that the VM's Memory(i) maps that file at that
// offset (the engine reads it for zero pages, providers get its
// address), and that RAM() does not change after this call (the
// framework.Source contract forbids it).
func (s *Session) checkRAM(got framework.Layout) error {
	differs := func(format string, a ...any) error {
		return fmt.Errorf("session: the VM is not the one whose RAM was given to Open: "+format+" (nothing was run)", a...)
	}
	want := s.layout
	if len(got) != len(want) {
		return differs("%d RAM regions, Open's layout has %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		for _, f := range []struct {
			name      string
			got, want uint64
		}{{"GPA", g.GPA, w.GPA}, {"size", g.Size, w.Size}, {"offset", g.Offset, w.Offset}} {
			if f.got != f.want {
				return differs("RAM region %d: %s %#x, Open's %#x", i, f.name, f.got, f.want)
			}
		}
		gotID, err := fileIDOf(g.Fd)
		if err != nil {
			return differs("RAM region %d: fd %d: %w", i, g.Fd, err)
		}
		if wantID := s.fileIDs[s.ram[i].File]; gotID != wantID {
			return differs("RAM region %d: fd %d is file %v, Open's (fd %d) is file %v", i, g.Fd, gotID, w.Fd, wantID)
		}
	}
	return nil
}

// fileID is a file's identity: its device and inode.
type fileID struct{ dev, ino uint64 }

func (id fileID) String() string { return fmt.Sprintf("dev %d inode %d", id.dev, id.ino) }

// fileIDsOf is the identities of files, in order: Open's, for checkRAM.
func fileIDsOf(files []*os.File) ([]fileID, error) {
	ids := make([]fileID, len(files))
	for i, f := range files {
		id, err := fileIDOf(int(f.Fd()))
		if err != nil {
			return nil, fmt.Errorf("session: guest RAM file %d: %w", i, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// fileIDOf is the identity of the file behind descriptor fd.
func fileIDOf(fd int) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, fmt.Errorf("fstat: %w", err)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}
