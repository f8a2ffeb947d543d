package pagemap

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/hint"
)

// Holes of a region confirmed against the page tables are handed over
// in groups of at most vetoHoles holes spanning at most vetoPages pages.
const (
	vetoHoles = 4096
	vetoPages = 1 << 18 // 1 GiB
)

// region is one RAM region as a session classifies it.
type region struct {
	base     uint64 // framework page index of its first page
	pages    uint64
	fd       int    // a description of the RAM file of our own (see resources.open)
	offset   uint64 // of the region in the file, bytes
	hostAddr uint64 // where the VMM maps it
	veto     bool   // confirm holes with the VMM's page tables
}

// resources are what a session must release.
type resources struct {
	files []*os.File
	vm    *vmPages
}

func (r *resources) release() {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
	if r.vm != nil {
		r.vm.close()
		r.vm = nil
	}
}

// open returns a descriptor for f's file with a file offset of our own:
// lseek(SEEK_DATA) moves the offset, and f's description is shared with
// the VMM's session (its other plugins, the transport). It reopens
// /proc/self/fd/N, which makes a new description.
func (r *resources) open(f *os.File, log hclog.Logger) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	raw, err := f.SyscallConn()
	if err != nil {
		return -1, st, err
	}
	fd := -1
	if err := raw.Control(func(v uintptr) { fd = int(v) }); err != nil {
		return -1, st, err
	}
	own, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY, 0)
	if err == nil {
		r.files = append(r.files, own)
		fd = int(own.Fd())
	} else {
		log.Warn("cannot reopen a RAM file; seeking on the description shared with the VMM's session", "file", f.Name(), "error", err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, st, fmt.Errorf("pagemap: stat %s: %w", f.Name(), err)
	}
	return fd, st, nil
}

// openSession checks vm and prepares its regions.
func openSession(_ context.Context, c config, vm hint.VM, log hclog.Logger) (_ *session, err error) {
	if len(vm.RAM) == 0 {
		return nil, badConfig("the VM has no RAM regions")
	}
	s := &session{}
	defer func() {
		if err != nil {
			s.res.release()
		}
	}()
	type opened struct {
		fd int
		st unix.Stat_t
	}
	files := map[int]opened{}
	var maps []vma
	var mapsErr error
	var base uint64
	for i, r := range vm.RAM {
		if err := checkRegion(i, r, len(vm.Files)); err != nil {
			return nil, err
		}
		o, ok := files[r.File]
		if !ok {
			if vm.Files[r.File] == nil {
				return nil, badConfig("RAM region %d: file %d is nil", i, r.File)
			}
			if o.fd, o.st, err = s.res.open(vm.Files[r.File], log); err != nil {
				return nil, err
			}
			files[r.File] = o
		}
		if uint64(o.st.Size) < r.Offset+r.Size {
			return nil, fmt.Errorf("pagemap: RAM region %d ends at %#x in a file of %#x bytes", i, r.Offset+r.Size, o.st.Size)
		}
		kind, why := mapUnknown, "the VMM's PID or the region's host address is not known"
		if vm.PID > 0 && r.HostAddr != 0 {
			if maps == nil && mapsErr == nil {
				maps, mapsErr = readMaps(vm.PID)
			}
			if mapsErr != nil {
				why = mapsErr.Error()
			} else {
				id := fileID{major: unix.Major(o.st.Dev), minor: unix.Minor(o.st.Dev), inode: o.st.Ino}
				kind, why = mappingOf(maps, r.HostAddr, r.Size, id, r.Offset)
			}
		}
		veto, err := decide(c.method, i, kind, why)
		if err != nil {
			return nil, err
		}
		log.Info("RAM region", "index", i, "size", fmt.Sprintf("%d MiB", r.Size>>20), "mapping", kind.String(), "veto_by_page_tables", veto)
		if kind == mapUnknown {
			log.Info("trusting the VM contract: guest RAM is mapped MAP_SHARED", "index", i, "reason", why)
		}
		s.regions = append(s.regions, region{base: base, pages: r.Size / pageSize, fd: o.fd,
			offset: r.Offset, hostAddr: r.HostAddr, veto: veto})
		base += r.Size / pageSize
		if veto && s.res.vm == nil {
			if s.res.vm, err = openVMPages(vm.PID, log); err != nil {
				return nil, err
			}
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func checkRegion(i int, r hint.Region, files int) error {
	switch {
	case r.Size == 0 || r.Size%pageSize != 0 || r.Offset%pageSize != 0 || r.HostAddr%pageSize != 0:
		return badConfig("RAM region %d (size %#x, file offset %#x, host address %#x) is not page-aligned", i, r.Size, r.Offset, r.HostAddr)
	case r.File < 0 || r.File >= files:
		return badConfig("RAM region %d names file %d of %d", i, r.File, files)
	}
	return nil
}

func readMaps(pid int) ([]vma, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("pagemap: the VMM's mappings: %w", err)
	}
	return parseMaps(string(b))
}

// classify calls out with the zero pages of r as framework page ranges,
// in increasing order.
func (s *session) classify(ctx context.Context, r *region, out func(hint.Range) error) error {
	shift := func(h hint.Range) error { return out(hint.Range{First: r.base + h.First, Count: h.Count}) }
	if !r.veto {
		return fileHoles(ctx, r.fd, r.offset, r.pages, shift)
	}
	var pending []hint.Range
	flush := func() error {
		zero, err := s.res.vm.veto(ctx, r.hostAddr, pending)
		pending = pending[:0]
		if err != nil {
			return err
		}
		for _, z := range zero {
			if err := shift(z); err != nil {
				return err
			}
		}
		return nil
	}
	err := fileHoles(ctx, r.fd, r.offset, r.pages, func(h hint.Range) error {
		pending = append(pending, h)
		if len(pending) >= vetoHoles || h.First+h.Count-pending[0].First >= vetoPages {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
