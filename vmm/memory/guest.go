package memory

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Guest is the RAM of one VM: a memfd and its shared mapping.
type Guest struct {
	fd      int
	mapping []byte
	regions []Region
	dirty   []uint64 // VMM writes, see dirty.go
}

// New creates size bytes of guest RAM. It refuses sizes beyond the host's
// physical memory (MemTotal), because such a guest would be killed later,
// at a worse time, by the OOM killer.
func New(size uint64) (*Guest, error) {
	regions, err := Layout(size)
	if err != nil {
		return nil, err
	}
	if err := FitsHost(size); err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("ferry-guest-ram", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size guest memfd to %s: %w", FormatSize(size), err)
	}
	// Its size is fixed from here on: a plugin given the memfd (a
	// migration's transport, which writes pages into it) cannot truncate
	// it under our mapping, which would kill the VMM with SIGBUS.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seal the size of guest memfd: %w", err)
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map guest memory: %w", err)
	}
	pages := size / PageSize
	return &Guest{fd: fd, mapping: m, regions: regions, dirty: make([]uint64, (pages+63)/64)}, nil
}

// Close unmaps and closes guest RAM. Slices returned earlier become invalid.
func (g *Guest) Close() error {
	err := unix.Munmap(g.mapping)
	if cerr := unix.Close(g.fd); err == nil {
		err = cerr
	}
	return err
}

// Regions returns the RAM regions, sorted by address.
func (g *Guest) Regions() []Region { return append([]Region(nil), g.regions...) }

// Size is the total RAM in bytes.
func (g *Guest) Size() uint64 { return uint64(len(g.mapping)) }

// Fd is the memfd; it stays owned by the Guest.
func (g *Guest) Fd() int { return g.fd }

// Host returns the whole mapping; byte i is memfd offset i.
func (g *Guest) Host() []byte { return g.mapping }

// Slice returns the host bytes backing guest physical [gpa, gpa+n). The
// range must lie inside one region.
func (g *Guest) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range g.regions {
		if r.Contains(gpa, n) {
			off := r.Offset + (gpa - r.GPA)
			return g.mapping[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("guest physical range %#x+%#x is not RAM", gpa, n)
}

// FitsHost fails when size is more than the host's physical memory.
func FitsHost(size uint64) error {
	host, err := HostMemory()
	if err != nil {
		return nil // no /proc/meminfo: let the kernel decide later
	}
	if size > host {
		return fmt.Errorf("memory size %s is more than this host has (%s)", FormatSize(size), FormatSize(host))
	}
	return nil
}

// HostMemory returns the host's MemTotal in bytes.
func HostMemory() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse MemTotal: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// Discard gives the host pages backing guest physical [gpa, gpa+n) back
// (fallocate PUNCH_HOLE): they cost no host memory and read as zero until
// written again. The range must be page-aligned and inside one region.
// The VMM marks the range dirty: its content changed without a vCPU write.
func (g *Guest) Discard(gpa, n uint64) error {
	if gpa%PageSize != 0 || n%PageSize != 0 {
		return fmt.Errorf("discard %#x+%#x: not page-aligned", gpa, n)
	}
	for _, r := range g.regions {
		if r.Contains(gpa, n) {
			off := r.Offset + gpa - r.GPA
			if err := unix.Fallocate(g.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n)); err != nil {
				return fmt.Errorf("discard %#x+%#x: %w", gpa, n, err)
			}
			g.MarkDirty(gpa, n)
			return nil
		}
	}
	return fmt.Errorf("discard %#x+%#x: not guest RAM", gpa, n)
}
