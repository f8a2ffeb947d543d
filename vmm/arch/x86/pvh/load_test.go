package pvh

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestLoadCopiesAndZeroes(t *testing.T) {
	for _, class := range []int{32, 64} {
		e := validELF(class)
		e.segs = append(e.segs, testSeg{paddr: 0x180000, data: []byte{1, 2, 3, 4, 5}, memsz: 0x1000})
		img := e.build()
		k, err := Parse(img)
		if err != nil {
			t.Fatalf("ELF%d: Parse: %v", class, err)
		}
		mem := newFakeMem(4 << 20)
		if err := k.Load(img, mem, []Region{{0, 4 << 20}}); err != nil {
			t.Fatalf("ELF%d: Load: %v", class, err)
		}
		for _, s := range e.segs {
			got := mem.buf[s.paddr : s.paddr+s.memsz]
			want := append(bytes.Clone(s.data), make([]byte, s.memsz-uint64(len(s.data)))...)
			if !bytes.Equal(got, want) {
				t.Errorf("ELF%d: segment at %#x = %x, want %x", class, s.paddr, got, want)
			}
			if mem.buf[s.paddr-1] != 0xAA || mem.buf[s.paddr+s.memsz] != 0xAA {
				t.Errorf("ELF%d: bytes around segment at %#x were touched", class, s.paddr)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	img := make([]byte, 0x100)
	seg := func(gpa, size uint64) Segment { return Segment{GPA: gpa, FileSize: 0x10, MemSize: size} }
	small := []Region{{0, 64 << 20}}
	big := ramLayout(8 << 30)
	tests := []struct {
		name    string
		k       Kernel
		ram     []Region
		mem     Memory
		wantErr string
	}{
		{
			name:    "segment overlapping the MMIO hole",
			k:       Kernel{Entry: 0xbfff_f000, Segments: []Segment{seg(0xbfff_f000, 0x2000)}},
			ram:     big,
			wantErr: "segment 0xbffff000-0xc0000fff overlaps the 32-bit MMIO hole (0xc0000000-0xffffffff)",
		},
		{
			name:    "segment inside the MMIO hole",
			k:       Kernel{Entry: 0xfee0_0000, Segments: []Segment{seg(0xfee0_0000, 0x1000)}},
			ram:     big,
			wantErr: "overlaps the 32-bit MMIO hole",
		},
		{
			name:    "segment beyond RAM",
			k:       Kernel{Entry: 0x400_0000, Segments: []Segment{seg(0x400_0000, 0x1000)}},
			ram:     small,
			wantErr: "segment 0x4000000-0x4000fff lies outside guest RAM (64 MiB)",
		},
		{
			name:    "segment straddling the end of RAM",
			k:       Kernel{Entry: 0x3ff_f000, Segments: []Segment{seg(0x3ff_f000, 0x2000)}},
			ram:     small,
			wantErr: "lies outside guest RAM (64 MiB)",
		},
		{
			name:    "segment over the boot-info area",
			k:       Kernel{Entry: 0x7000, Segments: []Segment{seg(0x7000, 0x2000)}},
			ram:     small,
			wantErr: "segment 0x7000-0x8fff overlaps the PVH boot-info area (0x6000-0x7fff)",
		},
		{
			name:    "segment ending inside the boot-info area",
			k:       Kernel{Entry: 0x5000, Segments: []Segment{seg(0x5000, 0x1001)}},
			ram:     small,
			wantErr: "boot-info area",
		},
		{
			name:    "entry outside segments",
			k:       Kernel{Entry: 0x200000, Low: 0x100000, High: 0x101000, Segments: []Segment{seg(0x100000, 0x1000)}},
			ram:     small,
			wantErr: "PVH entry point 0x200000 is not inside any loaded segment",
		},
		{
			name:    "overlapping segments",
			k:       Kernel{Entry: 0x100000, Segments: []Segment{seg(0x101000, 0x1000), seg(0x100000, 0x1001)}},
			ram:     small,
			wantErr: "segments 0x100000-0x101000 and 0x101000-0x101fff overlap",
		},
		{
			name:    "file range beyond image",
			k:       Kernel{Entry: 0x100000, Segments: []Segment{{GPA: 0x100000, Offset: 0xf8, FileSize: 0x10, MemSize: 0x10}}},
			ram:     small,
			wantErr: "beyond the end of the 256-byte image",
		},
		{
			name:    "filesz > memsz",
			k:       Kernel{Entry: 0x100000, Segments: []Segment{{GPA: 0x100000, FileSize: 0x20, MemSize: 0x10}}},
			ram:     small,
			wantErr: "invalid sizes",
		},
		{name: "no segments", k: Kernel{}, ram: small, wantErr: "no segments"},
		{name: "no RAM", k: Kernel{Entry: 0x100000, Segments: []Segment{seg(0x100000, 0x10)}}, wantErr: "no guest RAM"},
		{
			name:    "memory error",
			k:       Kernel{Entry: 0x100000, Segments: []Segment{seg(0x100000, 0x10)}},
			ram:     small,
			mem:     &fakeMem{err: errors.New("boom")},
			wantErr: "load kernel: segment 0x100000-0x10000f: boom",
		},
		{
			name:    "memory returns a short slice",
			k:       Kernel{Entry: 0x100000, Segments: []Segment{seg(0x100000, 0x10)}},
			ram:     small,
			mem:     shortMem{},
			wantErr: "returned 1 bytes, want 16",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := tt.mem
			if mem == nil {
				mem = newFakeMem(1 << 20)
			}
			err := tt.k.Load(img, mem, tt.ram)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// shortMem returns one byte whatever is asked.
type shortMem struct{}

func (shortMem) Slice(gpa, n uint64) ([]byte, error) { return make([]byte, 1), nil }

func TestLoadLeavesMemoryOnError(t *testing.T) {
	e := validELF(64)
	e.segs = append(e.segs, testSeg{paddr: 0x7f_0000, data: []byte{1}, memsz: 0x20_0000})
	img := e.build()
	k, err := Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	mem := newFakeMem(8 << 20)
	if err := k.Load(img, mem, []Region{{0, 8 << 20}}); err == nil {
		t.Fatal("Load succeeded with a segment beyond RAM")
	}
	if mem.buf[0x100000] != 0xAA {
		t.Fatal("Load wrote the first segment although a later one was invalid")
	}
}

func TestCheckRAM(t *testing.T) {
	tests := []struct {
		name    string
		ram     []Region
		wantErr string
	}{
		{"one region", []Region{{0, 1 << 30}}, ""},
		{"split around the hole", ramLayout(6 << 30), ""},
		{"empty", nil, "no guest RAM"},
		{"not at 0", []Region{{0x1000, 1 << 20}}, "must start at 0"},
		{"zero size", []Region{{0, 1 << 20}, {2 << 20, 0}}, "empty or wraps"},
		{"wraps", []Region{{0, 1 << 20}, {0xffff_ffff_ffff_f000, 0x2000}}, "empty or wraps"},
		{"unsorted", []Region{{0, 2 << 20}, {1 << 20, 1 << 20}}, "not sorted"},
		{"in the hole", []Region{{0, 4 << 30}}, "overlaps the 32-bit MMIO hole"},
	}
	for _, tt := range tests {
		err := checkRAM(tt.ram)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: checkRAM = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestRAMLayoutHelper(t *testing.T) {
	tests := []struct {
		size uint64
		want []Region
	}{
		{0, nil},
		{64 << 20, []Region{{0, 64 << 20}}},
		{3 << 30, []Region{{0, 3 << 30}}},
		{3<<30 + 4096, []Region{{0, 3 << 30}, {4 << 30, 4096}}},
		{8 << 30, []Region{{0, 3 << 30}, {4 << 30, 5 << 30}}},
	}
	for _, tt := range tests {
		got := ramLayout(tt.size)
		if len(got) != len(tt.want) {
			t.Errorf("ramLayout(%#x) = %v, want %v", tt.size, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ramLayout(%#x) = %v, want %v", tt.size, got, tt.want)
			}
		}
	}
}
