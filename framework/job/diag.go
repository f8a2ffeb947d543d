package job

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostics writes diags the way compilers and Terraform do:
//
//	job.hcl:4:3: Unsupported argument: An argument named "strems" is not expected in transport "tcp". Did you mean "streams"? ...
//	   4 |   strems = 2
//	     |   ^^^^^^
//
// Diagnostics are written in file order, whichever step produced them.
// sources maps file names (as given to Parse) to their contents; a
// diagnostic in a file missing from it is written without the source
// line. A blank line follows every diagnostic.
func FormatDiagnostics(w io.Writer, sources map[string][]byte, diags hcl.Diagnostics) error {
	diags = slices.Clone(diags)
	sortDiags(diags)
	var b strings.Builder
	for _, d := range diags {
		formatDiagnostic(&b, sources, d)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatDiagnostic(b *strings.Builder, sources map[string][]byte, d *hcl.Diagnostic) {
	if s := d.Subject; s != nil {
		fmt.Fprintf(b, "%s:%d:%d: ", s.Filename, s.Start.Line, s.Start.Column)
	}
	if d.Severity == hcl.DiagWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(d.Detail)
	}
	b.WriteByte('\n')
	if d.Subject != nil {
		snippet(b, sources[d.Subject.Filename], *d.Subject)
	}
	b.WriteByte('\n')
}

// snippet writes the first line of r with r underlined on it.
func snippet(b *strings.Builder, src []byte, r hcl.Range) {
	if src == nil || r.Start.Line < 1 {
		return
	}
	start := 0 // byte offset of line r.Start.Line
	for n := 1; n < r.Start.Line; n++ {
		i := bytes.IndexByte(src[start:], '\n')
		if i < 0 {
			return
		}
		start += i + 1
	}
	line := src[start:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	from, to := r.Start.Byte-start, r.End.Byte-start
	if from < 0 || from > len(line) {
		return
	}
	to = min(max(to, from), len(line))

	num := fmt.Sprintf("%4d", r.Start.Line)
	fmt.Fprintf(b, "%s | %s\n", num, line)
	fmt.Fprintf(b, "%s | ", strings.Repeat(" ", len(num)))
	for _, c := range string(line[:from]) {
		if c == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString(strings.Repeat("^", max(1, utf8.RuneCount(line[from:to]))))
	b.WriteByte('\n')
}

// sortDiags orders diags by position, those without one first; the
// order among diagnostics at one position is kept.
func sortDiags(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}

// didYouMean suggests the option closest to name, if one is close.
func didYouMean(name string, options []string) string {
	if best := closest(name, options); best != "" {
		return fmt.Sprintf(" Did you mean %q?", best)
	}
	return ""
}

// closest returns the option within two edits of name, or "".
func closest(name string, options []string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if d := distance(name, o); d < bestDist {
			best, bestDist = o, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b in bytes.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return len(a) + len(b) // not a typo of a short name
	}
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list joins names for a diagnostic: "a, b, c", or "none".
func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
