package pagemap

import (
	"fmt"
	"strconv"
	"strings"
)

// vma is one line of /proc/PID/maps:
//
//	7f1c2a000000-7f1c2c000000 rw-s 00000000 00:01 1234    /memfd:guest (deleted)
//	start-end                 perms offset  dev   inode   path
type vma struct {
	start, end   uint64
	perms        string // "rw-s": read, write, exec, s(hared) or p(rivate)
	offset       uint64 // file offset of start
	major, minor uint32 // device of the file, 0:0 for anonymous memory
	inode        uint64 // 0 for anonymous memory
	path         string
}

func (v vma) shared() bool { return len(v.perms) == 4 && v.perms[3] == 's' }

// parseMapsLine decodes one line of /proc/PID/maps.
func parseMapsLine(line string) (vma, error) {
	var v vma
	f := strings.Fields(line)
	if len(f) < 5 {
		return v, fmt.Errorf("maps line %q: %d fields, want at least 5", line, len(f))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	var err error
	if !ok {
		return v, fmt.Errorf("maps line %q: address range %q has no '-'", line, f[0])
	}
	if v.start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return v, fmt.Errorf("maps line %q: start: %w", line, err)
	}
	if v.end, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return v, fmt.Errorf("maps line %q: end: %w", line, err)
	}
	if v.end < v.start {
		return v, fmt.Errorf("maps line %q: end before start", line)
	}
	if len(f[1]) != 4 || (f[1][3] != 's' && f[1][3] != 'p') {
		return v, fmt.Errorf("maps line %q: permissions %q", line, f[1])
	}
	v.perms = f[1]
	if v.offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return v, fmt.Errorf("maps line %q: offset: %w", line, err)
	}
	maj, min, ok := strings.Cut(f[3], ":")
	if !ok {
		return v, fmt.Errorf("maps line %q: device %q has no ':'", line, f[3])
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || err2 != nil {
		return v, fmt.Errorf("maps line %q: device %q", line, f[3])
	}
	v.major, v.minor = uint32(ma), uint32(mi)
	if v.inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return v, fmt.Errorf("maps line %q: inode: %w", line, err)
	}
	if len(f) > 5 {
		v.path = strings.Join(f[5:], " ")
	}
	return v, nil
}

// parseMaps decodes a whole /proc/PID/maps file.
func parseMaps(text string) ([]vma, error) {
	var out []vma
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		v, err := parseMapsLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// mapKind says how the VMM maps a region of guest RAM.
type mapKind int

const (
	mapUnknown mapKind = iota // no PID or host address, or maps unreadable
	mapShared                 // MAP_SHARED mappings of the region's file, offsets matching
	mapPrivate                // of the region's file, at least one part MAP_PRIVATE
	mapOther                  // something else: a hole, another file, anonymous memory
)

func (k mapKind) String() string {
	return [...]string{"unknown", "MAP_SHARED", "MAP_PRIVATE", "not a mapping of its file"}[k]
}

// fileID identifies the region's file as maps shows it.
type fileID struct {
	major, minor uint32
	inode        uint64
}

// mappingOf says how vmas (sorted, as in maps) map [addr, addr+size) and,
// for mapOther, why not as expected: the range must be covered without
// gaps by mappings of file whose offsets match fileOff at addr.
func mappingOf(vmas []vma, addr, size uint64, file fileID, fileOff uint64) (mapKind, string) {
	end := addr + size
	if end < addr {
		return mapOther, fmt.Sprintf("range %#x+%#x overflows", addr, size)
	}
	kind, at := mapShared, addr
	for _, v := range vmas {
		if v.end <= at || at >= end {
			continue
		}
		if v.start > at {
			return mapOther, fmt.Sprintf("nothing is mapped at %#x", at)
		}
		if v.inode != file.inode || v.major != file.major || v.minor != file.minor {
			return mapOther, fmt.Sprintf("%#x is in %s (%x:%x inode %d), not the RAM file (%x:%x inode %d)",
				at, describe(v), v.major, v.minor, v.inode, file.major, file.minor, file.inode)
		}
		if v.offset+(at-v.start) != fileOff+(at-addr) {
			return mapOther, fmt.Sprintf("%#x maps file offset %#x, want %#x", at, v.offset+(at-v.start), fileOff+(at-addr))
		}
		if !v.shared() {
			kind = mapPrivate
		}
		at = v.end
	}
	if at < end {
		return mapOther, fmt.Sprintf("nothing is mapped at %#x", at)
	}
	return kind, ""
}

func describe(v vma) string {
	if v.path == "" {
		return "anonymous memory"
	}
	return strconv.Quote(v.path)
}
