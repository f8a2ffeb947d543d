package memory

import (
	"fmt"
	"strconv"
	"strings"
)

// PageSize is the guest page size Ferry tracks.
const PageSize = 4096

const (
	// LowRAMTop is where RAM below 4 GiB ends and the 32-bit MMIO hole begins.
	LowRAMTop = 0xC000_0000
	// HighRAMBase is where RAM above the hole begins.
	HighRAMBase = 1 << 32
	// MinSize is the smallest guest Ferry boots.
	MinSize = 16 << 20
	// MaxSize bounds guest RAM (1 TiB); the host's own RAM usually bounds it first.
	MaxSize = 1 << 40
)

// Region is a range of guest-physical RAM and where it lives in the memfd.
type Region struct {
	GPA    uint64 // guest physical address of the first byte
	Size   uint64 // bytes, a multiple of PageSize
	Offset uint64 // offset of the first byte in the memfd
}

// End is one past the region's last guest physical address.
func (r Region) End() uint64 { return r.GPA + r.Size }

// Contains reports whether [gpa, gpa+n) lies entirely inside the region.
func (r Region) Contains(gpa, n uint64) bool {
	return gpa >= r.GPA && n <= r.Size && gpa-r.GPA <= r.Size-n
}

// Layout splits size bytes of RAM around the 32-bit MMIO hole.
func Layout(size uint64) ([]Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	if size <= LowRAMTop {
		return []Region{{GPA: 0, Size: size}}, nil
	}
	return []Region{
		{GPA: 0, Size: LowRAMTop},
		{GPA: HighRAMBase, Size: size - LowRAMTop, Offset: LowRAMTop},
	}, nil
}

func checkSize(size uint64) error {
	switch {
	case size%PageSize != 0:
		return fmt.Errorf("memory size %d is not a multiple of 4 KiB", size)
	case size < MinSize:
		return fmt.Errorf("memory size %s is too small: at least %s", FormatSize(size), FormatSize(MinSize))
	case size > MaxSize:
		return fmt.Errorf("memory size %s is too large: at most %s", FormatSize(size), FormatSize(MaxSize))
	}
	return nil
}

// ParseSize parses sizes like "512M", "8G", "8GiB", "1T" or "65536K"
// (binary units). A plain number means MiB, as QEMU's -m does.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	upper := strings.ToUpper(t)
	upper = strings.TrimSuffix(strings.TrimSuffix(upper, "IB"), "B")
	shift := 20
	if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			shift, upper = 10, upper[:n-1]
		case 'M':
			shift, upper = 20, upper[:n-1]
		case 'G':
			shift, upper = 30, upper[:n-1]
		case 'T':
			shift, upper = 40, upper[:n-1]
		}
	}
	v, err := strconv.ParseUint(upper, 10, 64)
	if err != nil || t == "" {
		return 0, fmt.Errorf("bad size %q: want a number with an optional unit K, M, G or T (binary), e.g. 512M or 8G", s)
	}
	if v > (1<<63)>>shift {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return v << shift, nil
}

// FormatSize prints a byte count in the largest binary unit it reaches:
// exactly when that unit divides it, else to one decimal.
func FormatSize(n uint64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		switch {
		case n < 1<<u.shift:
			continue
		case n%(1<<u.shift) == 0:
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		default:
			return fmt.Sprintf("%.1f %s", float64(n)/float64(uint64(1)<<u.shift), u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
