package job

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestFormatDiagnostics(t *testing.T) {
	src := []byte("a = 1\n\tbé = \"x\"\r\nlast")
	at := func(line, col, byteOff, endCol, endByte int) *hcl.Range {
		return &hcl.Range{Filename: "f.hcl",
			Start: hcl.Pos{Line: line, Column: col, Byte: byteOff},
			End:   hcl.Pos{Line: line, Column: endCol, Byte: endByte}}
	}
	for _, c := range []struct {
		name string
		diag hcl.Diagnostic
		want string
	}{
		{"plain", hcl.Diagnostic{Summary: "S", Detail: "D.", Subject: at(1, 1, 0, 2, 1)},
			"f.hcl:1:1: S: D.\n   1 | a = 1\n     | ^\n\n"},
		{"tab and unicode before", hcl.Diagnostic{Summary: "S", Detail: "D.", Subject: at(2, 7, 13, 10, 16)},
			"f.hcl:2:7: S: D.\n   2 | \tbé = \"x\"\n     | \t     ^^^\n\n"},
		{"underline stops at the line end", hcl.Diagnostic{Summary: "S", Subject: &hcl.Range{Filename: "f.hcl",
			Start: hcl.Pos{Line: 1, Column: 5, Byte: 4}, End: hcl.Pos{Line: 3, Column: 2, Byte: 21}}},
			"f.hcl:1:5: S\n   1 | a = 1\n     |     ^\n\n"},
		{"empty range at the end", hcl.Diagnostic{Summary: "S", Subject: at(3, 5, 22, 5, 22)},
			"f.hcl:3:5: S\n   3 | last\n     |     ^\n\n"},
		{"warning", hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "S", Detail: "D."},
			"warning: S: D.\n\n"},
		{"unknown file", hcl.Diagnostic{Summary: "S", Subject: &hcl.Range{Filename: "other.hcl", Start: hcl.Pos{Line: 1, Column: 1}}},
			"other.hcl:1:1: S\n\n"},
		{"line past the end", hcl.Diagnostic{Summary: "S", Subject: at(9, 1, 99, 2, 100)},
			"f.hcl:9:1: S\n\n"},
		{"byte offset off the line", hcl.Diagnostic{Summary: "S", Subject: at(1, 1, 50, 2, 51)},
			"f.hcl:1:1: S\n\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			if err := FormatDiagnostics(&b, map[string][]byte{"f.hcl": src}, hcl.Diagnostics{&c.diag}); err != nil {
				t.Fatal(err)
			}
			if b.String() != c.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), c.want)
			}
		})
	}
}

// TestFormatOrder: diagnostics come out in file order, whichever step
// made them, and the caller's slice is left alone.
func TestFormatOrder(t *testing.T) {
	r := func(b int) *hcl.Range {
		return &hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 1, Column: b + 1, Byte: b}, End: hcl.Pos{Line: 1, Column: b + 2, Byte: b + 1}}
	}
	diags := hcl.Diagnostics{{Summary: "second", Subject: r(3)}, {Summary: "first", Subject: r(1)}, {Summary: "nowhere"}}
	var b strings.Builder
	FormatDiagnostics(&b, nil, diags)
	if want := "nowhere\n\nf.hcl:1:2: first\n\nf.hcl:1:4: second\n\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	if diags[0].Summary != "second" {
		t.Error("FormatDiagnostics reordered the caller's slice")
	}
}
