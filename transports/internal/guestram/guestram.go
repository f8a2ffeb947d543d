package guestram

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// PageSize is the guest page size every mapping is counted in.
const PageSize = framework.PageSize

// Mapping is one RAM region of an OpenRequest, mapped shared.
type Mapping struct {
	First uint64 // guest page index of Mem[0]
	Pages uint64
	Mem   []byte // the mapping, Pages*PageSize bytes
	File  *os.File
	Off   int64 // file offset of Mem[0]
}

// RAM is a request's guest RAM, mapped.
type RAM struct {
	Maps   []Mapping     // in guest page order
	Layout []wire.Region // what a HELLO carries
	Pages  uint64        // guest pages in all of Maps
}

// Map checks req's RAM layout and maps every region: read-only to
// send, read-write (writable) to receive. On error nothing stays
// mapped. The caller releases the mappings with Unmap.
func Map(req transport.OpenRequest, writable bool) (RAM, error) {
	if len(req.RAM) == 0 || len(req.RAM) > wire.MaxRegions {
		return RAM{}, fmt.Errorf("%d RAM regions (want 1..%d)", len(req.RAM), wire.MaxRegions)
	}
	l := make(framework.Layout, len(req.RAM))
	for i, r := range req.RAM {
		l[i] = framework.Region{GPA: r.GPA, Size: r.Size, Offset: r.Offset}
	}
	if err := l.Check(); err != nil {
		return RAM{}, err
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	var g RAM
	for i, r := range req.RAM {
		m, err := mapRegion(req.Files, i, r, prot)
		if err != nil {
			g.Unmap()
			return RAM{}, err
		}
		m.First = g.Pages
		g.Pages += m.Pages
		g.Maps = append(g.Maps, m)
		g.Layout = append(g.Layout, wire.Region{GPA: r.GPA, Size: r.Size})
	}
	return g, nil
}

// Page returns the bytes of guest page p; p < Pages.
func (g *RAM) Page(p uint64) []byte {
	i := sort.Search(len(g.Maps), func(i int) bool { return g.Maps[i].First+g.Maps[i].Pages > p })
	off := (p - g.Maps[i].First) * PageSize
	return g.Maps[i].Mem[off : off+PageSize]
}

// Wrap returns wrap(m) for each of ms: a transport's own region type.
func Wrap[R any](ms []Mapping, wrap func(Mapping) R) []R {
	rs := make([]R, len(ms))
	for i, m := range ms {
		rs[i] = wrap(m)
	}
	return rs
}

func mapRegion(files []*os.File, i int, r transport.RAMRegion, prot int) (Mapping, error) {
	if r.File < 0 || r.File >= len(files) || files[r.File] == nil {
		return Mapping{}, fmt.Errorf("RAM region %d names file %d of %d", i, r.File, len(files))
	}
	f := files[r.File]
	st, err := f.Stat()
	if err != nil {
		return Mapping{}, fmt.Errorf("RAM region %d: %w", i, err)
	}
	// Touching a mapping past the end of its file raises SIGBUS: refuse it here.
	if end := r.Offset + r.Size; end < r.Offset || end > uint64(st.Size()) || r.Size > 1<<46 {
		return Mapping{}, fmt.Errorf("RAM region %d (%#x bytes at offset %#x) runs past the end of %s (%d bytes)",
			i, r.Size, r.Offset, f.Name(), st.Size())
	}
	m := Mapping{Pages: r.Size / PageSize, File: f, Off: int64(r.Offset)}
	err = Control(f, func(fd int) (err error) {
		m.Mem, err = unix.Mmap(fd, int64(r.Offset), int(r.Size), prot, unix.MAP_SHARED)
		return err
	})
	if err != nil {
		return Mapping{}, fmt.Errorf("map RAM region %d of %s: %w", i, f.Name(), err)
	}
	return m, nil
}

// Unmap releases every mapping; no goroutine may use them afterwards.
// A second call does nothing.
func (g *RAM) Unmap() error {
	var errs []error
	for _, m := range g.Maps {
		if m.Mem != nil {
			errs = append(errs, unix.Munmap(m.Mem))
		}
	}
	g.Maps = nil
	return errors.Join(errs...)
}

// Control runs fn with f's descriptor, without Fd's switch to blocking mode.
func Control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
