package pvh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// mutate returns a copy of the image built from e after applying f.
func mutate(e testELF, f func(img []byte) []byte) []byte {
	return f(e.build())
}

func TestParse(t *testing.T) {
	seg1M := Segment{GPA: 0x100000, FileSize: 0x20, MemSize: 0x100}
	tests := []struct {
		name    string
		image   []byte
		want    *Kernel
		wantErr string // substring; empty means success
		wantIs  error
		segData [][]byte // file bytes of each segment, checked through Offset
	}{
		{
			name:  "elf64",
			image: validELF(64).build(),
			want: &Kernel{Class: 64, Entry: 0x100000, Low: 0x100000, High: 0x100100,
				Segments: []Segment{seg1M}},
			segData: [][]byte{validELF(64).segs[0].data},
		},
		{
			name:  "elf32",
			image: validELF(32).build(),
			want: &Kernel{Class: 32, Entry: 0x100000, Low: 0x100000, High: 0x100100,
				Segments: []Segment{seg1M}},
			segData: [][]byte{validELF(32).segs[0].data},
		},
		{
			name: "elf64 8-byte descriptor (Linux _ASM_PTR)",
			image: func() []byte {
				e := validELF(64)
				e.notes = []testNote{{name: "Xen\x00", typ: 18, desc: binary.LittleEndian.AppendUint64(nil, 0x100010)}}
				return e.build()
			}(),
			want:    &Kernel{Class: 64, Entry: 0x100010, Low: 0x100000, High: 0x100100, Segments: []Segment{seg1M}},
			segData: [][]byte{validELF(64).segs[0].data},
		},
		{
			name: "entry note after other notes, 8-byte note alignment",
			image: func() []byte {
				e := validELF(64)
				e.noteAlign = 8
				e.notes = []testNote{
					{name: "GNU\x00", typ: 5, desc: make([]byte, 12)},
					{name: "Xen\x00", typ: 6, desc: []byte("linux\x00")},
					{name: "Linux\x00", typ: 18, desc: []byte{1, 2, 3, 4}},
					pvhNote(0x100004),
				}
				return e.build()
			}(),
			want:    &Kernel{Class: 64, Entry: 0x100004, Low: 0x100000, High: 0x100100, Segments: []Segment{seg1M}},
			segData: [][]byte{validELF(64).segs[0].data},
		},
		{
			name: "two segments, empty PT_LOAD skipped",
			image: func() []byte {
				e := validELF(64)
				e.segs = append(e.segs,
					testSeg{paddr: 0x300000, data: nil, memsz: 0},
					testSeg{paddr: 0x200000, data: []byte{1, 2, 3}, memsz: 0x2000})
				return e.build()
			}(),
			want: &Kernel{Class: 64, Entry: 0x100000, Low: 0x100000, High: 0x202000,
				Segments: []Segment{seg1M, {GPA: 0x200000, FileSize: 3, MemSize: 0x2000}}},
			segData: [][]byte{validELF(64).segs[0].data, {1, 2, 3}},
		},
		{name: "empty image", image: nil, wantIs: ErrNotELF},
		{name: "bad magic", image: mutate(validELF(64), func(b []byte) []byte { b[1] = 'X'; return b }), wantIs: ErrNotELF},
		{name: "text file", image: []byte("#!/bin/sh\necho hello\n"), wantIs: ErrNotELF},
		{name: "wrong class", image: mutate(validELF(64), func(b []byte) []byte { b[4] = 3; return b }), wantErr: "unsupported ELF class 3"},
		{name: "big-endian", image: mutate(validELF(64), func(b []byte) []byte { b[5] = elfData2MSB; return b }), wantErr: "big-endian ELF is not supported"},
		{name: "bad data encoding", image: mutate(validELF(32), func(b []byte) []byte { b[5] = 0; return b }), wantErr: "unsupported ELF data encoding"},
		{name: "truncated elf64 header", image: validELF(64).build()[:40], wantErr: "truncated ELF header"},
		{name: "truncated elf32 header", image: validELF(32).build()[:51], wantErr: "truncated ELF header"},
		{name: "not ET_EXEC", image: mutate(validELF(64), func(b []byte) []byte { b[16] = 3; return b }), wantErr: "want ET_EXEC"},
		{name: "wrong machine", image: mutate(validELF(64), func(b []byte) []byte { b[18] = 40; return b }), wantErr: "ELF machine is 40"},
		{name: "truncated program headers", image: validELF(64).build()[:ehdr64Size+phdr64Size+10], wantErr: "truncated program header table"},
		{
			name: "phoff overflow",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint64(b[32:], 0xffff_ffff_ffff_fff0)
				return b
			}),
			wantErr: "truncated program header table",
		},
		{
			name: "phnum beyond image",
			image: mutate(validELF(32), func(b []byte) []byte {
				le.PutUint16(b[44:], 0xfffe)
				return b
			}),
			wantErr: "truncated program header table (65534 entries",
		},
		{name: "phnum PN_XNUM", image: mutate(validELF(64), func(b []byte) []byte { le.PutUint16(b[56:], pnXNum); return b }), wantErr: "PN_XNUM"},
		{name: "no program headers", image: mutate(validELF(64), func(b []byte) []byte { le.PutUint16(b[56:], 0); return b }), wantErr: "no program headers"},
		{name: "phentsize too small", image: mutate(validELF(64), func(b []byte) []byte { le.PutUint16(b[54:], 32); return b }), wantErr: "program header size is 32"},
		{
			name: "segment file range out of bounds",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint64(b[phdrOff(64, 1)+8:], uint64(len(b))-0x10) // p_offset
				return b
			}),
			wantErr: "program header 1 (PT_LOAD): truncated image",
		},
		{
			name: "segment file offset overflow",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint64(b[phdrOff(64, 1)+8:], 0xffff_ffff_ffff_fff0)
				return b
			}),
			wantErr: "truncated image",
		},
		{
			name: "filesz > memsz",
			image: mutate(validELF(32), func(b []byte) []byte {
				le.PutUint32(b[phdrOff(32, 1)+20:], 0x10) // p_memsz
				return b
			}),
			wantErr: "p_filesz 0x20 is larger than p_memsz 0x10",
		},
		{
			name: "segment address wraps",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint64(b[phdrOff(64, 1)+24:], 0xffff_ffff_ffff_ff00) // p_paddr
				return b
			}),
			wantErr: "wraps around",
		},
		{
			name:    "no PT_LOAD",
			image:   func() []byte { e := validELF(64); e.segs = nil; return e.build() }(),
			wantErr: "no loadable segments",
		},
		{
			name:   "no note",
			image:  func() []byte { e := validELF(64); e.notes = nil; return e.build() }(),
			wantIs: ErrNoPVHNote,
		},
		{
			name: "only other notes",
			image: func() []byte {
				e := validELF(32)
				e.notes = []testNote{{name: "Xen\x00", typ: 5, desc: []byte("4.17")}, {name: "Xen", typ: 18, desc: []byte{0, 0, 16, 0}}}
				return e.build()
			}(),
			wantIs: ErrNoPVHNote,
		},
		{
			name: "note namesz too large",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint32(b[ehdr64Size+2*phdr64Size:], 0xffff_ffff)
				return b
			}),
			wantErr: "truncated note at offset 0x0",
		},
		{
			name: "note descsz too large",
			image: mutate(validELF(64), func(b []byte) []byte {
				le.PutUint32(b[ehdr64Size+2*phdr64Size+4:], 0x1000)
				return b
			}),
			wantErr: "descsz 4096 run past the end",
		},
		{
			name: "note descriptor 2 bytes",
			image: func() []byte {
				e := validELF(64)
				e.notes = []testNote{{name: "Xen\x00", typ: 18, desc: []byte{0, 1}}}
				return e.build()
			}(),
			wantErr: "2-byte descriptor",
		},
		{
			name: "note entry above 4 GiB",
			image: func() []byte {
				e := validELF(64)
				e.notes = []testNote{{name: "Xen\x00", typ: 18, desc: binary.LittleEndian.AppendUint64(nil, 1<<32)}}
				return e.build()
			}(),
			wantErr: "above 4 GiB",
		},
		{
			name: "truncated note header",
			image: func() []byte {
				e := validELF(32)
				e.notes = []testNote{{name: "GNU\x00", typ: 1, desc: []byte{0, 0, 0, 0}}}
				e.extraBytes = 5
				return e.build()
			}(),
			wantErr: "truncated note at offset 0x14",
		},
		{
			name: "PT_NOTE out of bounds",
			image: mutate(validELF(32), func(b []byte) []byte {
				le.PutUint32(b[phdrOff(32, 0)+16:], 0x10000) // p_filesz
				return b
			}),
			wantErr: "program header 0 (PT_NOTE): file range",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Parse(tt.image)
			if tt.wantErr != "" || tt.wantIs != nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want error")
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %q, want %q", err, tt.wantIs)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for i, s := range k.Segments {
				if got := tt.image[s.Offset : s.Offset+s.FileSize]; i < len(tt.segData) && !bytes.Equal(got, tt.segData[i]) {
					t.Errorf("segment %d file bytes = %x, want %x", i, got, tt.segData[i])
				}
				k.Segments[i].Offset = 0 // checked above
			}
			if !reflect.DeepEqual(k, tt.want) {
				t.Fatalf("Parse = %+v, want %+v", k, tt.want)
			}
		})
	}
}

func TestNoteAlign(t *testing.T) {
	tests := []struct {
		class  int
		palign uint64
		want   uint64
	}{
		{32, 4, 4}, {32, 8, 4}, {64, 0, 4}, {64, 4, 4}, {64, 8, 8}, {64, 16, 4},
	}
	for _, tt := range tests {
		if got := noteAlign(tt.class, tt.palign); got != tt.want {
			t.Errorf("noteAlign(%d, %d) = %d, want %d", tt.class, tt.palign, got, tt.want)
		}
	}
}
