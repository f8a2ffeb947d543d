package pagemap

import (
	"strings"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	v, err := parseMapsLine("7f1c2a000000-7f1c2c000000 rw-s 00001000 00:01 1234                       /memfd:guest ram (deleted)")
	want := vma{start: 0x7f1c2a000000, end: 0x7f1c2c000000, perms: "rw-s", offset: 0x1000, major: 0, minor: 1, inode: 1234,
		path: "/memfd:guest ram (deleted)"}
	if err != nil || v != want || !v.shared() {
		t.Fatalf("got %+v, %v", v, err)
	}
	v, err = parseMapsLine("55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0 ")
	if err != nil || v.path != "" || v.shared() || v.inode != 0 {
		t.Fatalf("anonymous: %+v, %v", v, err)
	}
	v, err = parseMapsLine("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]")
	if err != nil || v.path != "[vsyscall]" {
		t.Fatalf("vsyscall: %+v, %v", v, err)
	}
	v, err = parseMapsLine("7f0000000000-7f0000001000 r--p 00000000 fd:1f 99 /usr/lib/x")
	if err != nil || v.major != 0xfd || v.minor != 0x1f {
		t.Fatalf("device: %+v, %v", v, err)
	}
	for _, bad := range []string{
		"", "7f-8f rw-s 0 00:01", "7f8f rw-s 0 00:01 1", "zz-8f rw-s 0 00:01 1", "7f-zz rw-s 0 00:01 1",
		"8f-7f rw-s 0 00:01 1", "7f-8f rw-x 0 00:01 1", "7f-8f rw 0 00:01 1", "7f-8f rw-s zz 00:01 1",
		"7f-8f rw-s 0 0001 1", "7f-8f rw-s 0 00:zz 1", "7f-8f rw-s 0 00:01 -1",
	} {
		if _, err := parseMapsLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	vs, err := parseMaps("1000-2000 rw-s 0 00:01 7 /a\n\n2000-3000 rw-p 1000 00:01 7 /a\n")
	if err != nil || len(vs) != 2 || vs[1].offset != 0x1000 {
		t.Fatalf("parseMaps: %+v, %v", vs, err)
	}
	if _, err := parseMaps("1000-2000 rw-s 0 00:01 7 /a\nnonsense\n"); err == nil {
		t.Fatal("a bad line accepted")
	}
}

func TestMappingOf(t *testing.T) {
	file := fileID{minor: 1, inode: 7}
	vmas, _ := parseMaps(`1000-3000 rw-s 00000000 00:01 7 /memfd:ram
3000-5000 rw-s 00002000 00:01 7 /memfd:ram
5000-6000 rw-p 00004000 00:01 7 /memfd:ram
7000-8000 rw-s 00006000 00:01 7 /memfd:ram
8000-9000 rw-s 00007000 00:01 8 /memfd:other
9000-a000 rw-p 00000000 00:00 0
`)
	for _, c := range []struct {
		addr, size, off uint64
		want            mapKind
		why             string
	}{
		{0x1000, 0x4000, 0, mapShared, ""},      // two VMAs, contiguous offsets
		{0x2000, 0x2000, 0x1000, mapShared, ""}, // inside
		{0x1000, 0x5000, 0, mapPrivate, ""},     // ends in the private one
		{0x1000, 0x6000, 0, mapOther, "nothing is mapped at 0x6000"},
		{0x0, 0x2000, 0, mapOther, "nothing is mapped at 0x0"},
		{0x7000, 0x1000, 0x6000, mapShared, ""},
		{0x7000, 0x2000, 0x6000, mapOther, "/memfd:other"},
		{0x9000, 0x1000, 0, mapOther, "anonymous memory"},
		{0x1000, 0x1000, 0x1000, mapOther, "maps file offset 0x0, want 0x1000"},
		{0xa000, 0x1000, 0, mapOther, "nothing is mapped at 0xa000"},
		{^uint64(0) - 0xfff, 0x2000, 0, mapOther, "overflows"},
	} {
		got, why := mappingOf(vmas, c.addr, c.size, file, c.off)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%#x+%#x@%#x: %v (%s), want %v (%s)", c.addr, c.size, c.off, got, why, c.want, c.why)
		}
	}
}

// FuzzParseMapsLine: no input panics, and what is accepted is well formed.
func FuzzParseMapsLine(f *testing.F) {
	f.Add("7f1c2a000000-7f1c2c000000 rw-s 00000000 00:01 1234 /memfd:guest (deleted)")
	f.Add("55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0")
	f.Add("1-0 rw-s 0 0:0 0")
	f.Fuzz(func(t *testing.T, line string) {
		v, err := parseMapsLine(line)
		if err != nil {
			return
		}
		if v.end < v.start || len(v.perms) != 4 || (v.perms[3] != 's' && v.perms[3] != 'p') {
			t.Fatalf("accepted %q as %+v", line, v)
		}
	})
}
