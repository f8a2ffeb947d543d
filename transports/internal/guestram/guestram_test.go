package guestram

import (
	"os"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

func TestMap(t *testing.T) {
	f := plugintest.Memfd(t, "ram", 8*PageSize)
	req := transport.OpenRequest{Files: []*os.File{f}, RAM: []transport.RAMRegion{
		{GPA: 0, Size: 2 * PageSize, Offset: 0},
		{GPA: 1 << 32, Size: 6 * PageSize, Offset: 2 * PageSize},
	}}
	g, err := Map(req, true)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Unmap()
	ms, layout := g.Maps, g.Layout
	if g.Pages != 8 {
		t.Fatalf("%d pages, want 8", g.Pages)
	}
	if len(ms) != 2 || ms[1].First != 2 || ms[1].Pages != 6 || len(ms[1].Mem) != 6*PageSize || ms[1].Off != 2*PageSize {
		t.Fatalf("mappings %+v", ms)
	}
	if len(layout) != 2 || layout[1].GPA != 1<<32 || layout[1].Size != 6*PageSize {
		t.Fatalf("layout %+v", layout)
	}
	ms[1].Mem[0] = 7 // writable and shared
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 2*PageSize); err != nil || b[0] != 7 {
		t.Fatalf("file byte = %v, %v; want 7", b, err)
	}
}

func TestMapRefuses(t *testing.T) {
	f := plugintest.Memfd(t, "ram", 4*PageSize)
	for _, tc := range []struct {
		name string
		ram  []transport.RAMRegion
		want string
	}{
		{"none", nil, "0 RAM regions"},
		{"file index", []transport.RAMRegion{{Size: PageSize, File: 1}}, "names file 1 of 1"},
		{"past the end", []transport.RAMRegion{{Size: 4 * PageSize, Offset: PageSize}}, "runs past the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Map(transport.OpenRequest{Files: []*os.File{f}, RAM: tc.ram}, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Map = %v, want %q", err, tc.want)
			}
		})
	}
}
