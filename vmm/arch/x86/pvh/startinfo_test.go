package pvh

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestWriteStartInfo(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		ram     []Region
		want    []MemmapEntry
	}{
		{
			name:    "one region",
			cmdline: "console=ttyS0 workload=idle",
			ram:     []Region{{0, 64 << 20}},
			want: []MemmapEntry{
				{0, 0xA0000, E820RAM},
				{0xA0000, 0x60000, E820Reserved},
				{0x100000, 63 << 20, E820RAM},
			},
		},
		{
			name: "split around the MMIO hole",
			ram:  ramLayout(5 << 30),
			want: []MemmapEntry{
				{0, 0xA0000, E820RAM},
				{0xA0000, 0x60000, E820Reserved},
				{0x100000, 3<<30 - 1<<20, E820RAM},
				{4 << 30, 2 << 30, E820RAM},
			},
		},
		{
			name:    "exactly 1 MiB",
			cmdline: strings.Repeat("x", MaxCmdline),
			ram:     []Region{{0, 1 << 20}},
			want: []MemmapEntry{
				{0, 0xA0000, E820RAM},
				{0xA0000, 0x60000, E820Reserved},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newFakeMem(1 << 20)
			if err := WriteStartInfo(mem, tt.cmdline, tt.ram); err != nil {
				t.Fatalf("WriteStartInfo: %v", err)
			}
			si := mem.buf[StartInfoGPA:]
			fields := []struct {
				name      string
				off, size int
				want      uint64
			}{
				{"magic", 0, 4, 0x336ec578},
				{"version", 4, 4, 1},
				{"flags", 8, 4, 0},
				{"nr_modules", 12, 4, 0},
				{"modlist_paddr", 16, 8, 0},
				{"cmdline_paddr", 24, 8, 0x7000},
				{"rsdp_paddr", 32, 8, 0},
				{"memmap_paddr", 40, 8, 0x6040},
				{"memmap_entries", 48, 4, uint64(len(tt.want))},
				{"reserved", 52, 4, 0},
			}
			for _, f := range fields {
				got := le.Uint64(si[f.off:])
				if f.size == 4 {
					got = uint64(le.Uint32(si[f.off:]))
				}
				if got != f.want {
					t.Errorf("hvm_start_info.%s = %#x, want %#x", f.name, got, f.want)
				}
			}
			if mem.buf[StartInfoGPA+56] != 0xAA {
				t.Errorf("byte after hvm_start_info was written")
			}
			for i, w := range tt.want {
				b := mem.buf[MemmapGPA+24*i:]
				got := MemmapEntry{Addr: le.Uint64(b), Size: le.Uint64(b[8:]), Type: le.Uint32(b[16:])}
				if got != w || le.Uint32(b[20:]) != 0 {
					t.Errorf("memmap[%d] = %+v (reserved %#x), want %+v", i, got, le.Uint32(b[20:]), w)
				}
			}
			if end := MemmapGPA + 24*len(tt.want); mem.buf[end] != 0xAA {
				t.Errorf("byte after the memory map was written")
			}
			cl := mem.buf[CmdlineGPA : CmdlineGPA+len(tt.cmdline)+1]
			if string(cl) != tt.cmdline+"\x00" {
				t.Errorf("command line = %q, want %q", cl, tt.cmdline+"\x00")
			}
		})
	}
}

func TestWriteStartInfoErrors(t *testing.T) {
	many := []Region{{0, 1 << 30}}
	for i := range 126 {
		many = append(many, Region{uint64(4+i) << 30, 1 << 20})
	}
	tests := []struct {
		name    string
		cmdline string
		ram     []Region
		mem     Memory
		wantErr string
	}{
		{"cmdline too long", strings.Repeat("x", MaxCmdline+1), []Region{{0, 2 << 20}}, nil, "4096 bytes; the limit is 4095"},
		{"cmdline with NUL", "console=ttyS0\x00rest", []Region{{0, 2 << 20}}, nil, "NUL byte at offset 13"},
		{"no RAM", "", nil, nil, "no guest RAM"},
		{"first region too small", "", []Region{{0, 0x80000}}, nil, "must cover the low 1 MiB"},
		{"too many regions", "", many, nil, "memory map needs 129 entries; at most 128"},
		{"memory error", "", []Region{{0, 2 << 20}}, &fakeMem{err: errors.New("boom")}, "write start info: memory map: boom"},
		{"start info not in memory", "", []Region{{0, 2 << 20}}, &fakeMem{buf: make([]byte, 0x6800)}, "command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := tt.mem
			if mem == nil {
				mem = newFakeMem(1 << 20)
			}
			err := WriteStartInfo(mem, tt.cmdline, tt.ram)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WriteStartInfo error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestMemmapMaxRegions(t *testing.T) {
	ram := []Region{{0, 1 << 30}}
	for i := range 125 {
		ram = append(ram, Region{uint64(4+i) << 30, 1 << 20})
	}
	mm, err := Memmap(ram)
	if err != nil {
		t.Fatal(err)
	}
	if len(mm) != MaxMemmapEntries {
		t.Fatalf("len = %d, want %d", len(mm), MaxMemmapEntries)
	}
	if !reflect.DeepEqual(mm[127], MemmapEntry{128 << 30, 1 << 20, E820RAM}) {
		t.Fatalf("last entry = %+v", mm[127])
	}
	if MemmapGPA+MaxMemmapEntries*memmapEntrySize > CmdlineGPA {
		t.Fatal("a full memory map runs into the command line")
	}
}
