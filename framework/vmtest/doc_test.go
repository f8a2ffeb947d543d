package vmtest_test

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestEmbedDocQuotesExample: the code docs/EMBEDDING.md shows under "A
// complete example" is example_test.go, whole, so the page cannot drift
// from code that compiles and prints what its Output comment says, and a
// reader who copies it misses nothing but pluginDir, which the page names.
func TestEmbedDocQuotesExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/EMBEDDING.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range checkQuote(string(doc), string(src)) {
		t.Error(e)
	}
}

// TestEmbedDocCheckIsStrict: checkQuote refuses a quote with a line cut
// out, a block that begins or ends inside a declaration, a declaration
// left out, and a section that quotes nothing.
func TestEmbedDocCheckIsStrict(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	file := string(src)
	quote := func(blocks ...string) string {
		s := "## A complete example\n\n"
		for _, b := range blocks {
			s += "```go\n" + b + "```\n\nprose\n\n"
		}
		return s + "## Next\n"
	}
	split := strings.Index(file, "// Example migrates")
	mid := strings.Index(file, "\tdstSpec := ")
	cut := strings.Replace(file, "\tvar last engine.Progress\n", "", 1)
	if errs := checkQuote(quote(file[:split-1], file[split:]), file); errs != nil {
		t.Fatalf("the whole file in two blocks was refused: %v", errs)
	}
	for name, doc := range map[string]string{
		"a line cut":              quote(cut),
		"split inside a function": quote(file[:mid], file[mid:]),
		"a declaration left out":  quote(file[:split-1]),
		"no code":                 quote(),
	} {
		if checkQuote(doc, file) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// checkQuote returns what is wrong with doc's "## A complete example"
// section as a quote of src: its ```go blocks, one after the other with a
// blank line between, must be src byte for byte, and each must be whole
// declarations (the first with the package clause and imports).
func checkQuote(doc, src string) []string {
	_, section, ok := strings.Cut(doc, "## A complete example")
	if !ok {
		return []string{`docs/EMBEDDING.md has no "## A complete example" section`}
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, b := range strings.Split(section, "```go\n")[1:] {
		code, _, _ := strings.Cut(b, "```")
		blocks = append(blocks, code)
	}
	if len(blocks) == 0 {
		return []string{"the example section quotes no Go code"}
	}
	var errs []string
	if got := strings.Join(blocks, "\n"); got != src {
		errs = append(errs, "the example section's code blocks, joined, are not example_test.go: "+firstDiff(got, src))
	}
	for i, b := range blocks {
		if i > 0 {
			b = "package vmtest_test\n" + b
		}
		if _, err := parser.ParseFile(token.NewFileSet(), "", b, parser.ParseComments); err != nil {
			errs = append(errs, fmt.Sprintf("code block %d is not whole declarations: %v", i+1, err))
		}
	}
	return errs
}

// firstDiff names the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d is %q, want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}
