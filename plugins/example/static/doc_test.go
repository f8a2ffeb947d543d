package static_test

import (
	"os"
	"strings"
	"testing"
)

// TestPluginsDoc: the walk-through in docs/PLUGINS.md shows the example's
// source verbatim: every Go block before its Testing section appears in
// doc.go, static.go or the plugin's main.go.
func TestPluginsDoc(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	doc := read("../../../docs/PLUGINS.md")
	start := strings.Index(doc, "## Walk-through")
	end := strings.Index(doc, "### Testing")
	if start < 0 || end < start {
		t.Fatal("docs/PLUGINS.md has no walk-through section")
	}
	sources := read("doc.go") + read("static.go") + read("../../../cmd/ferry-hint-example-static/main.go")
	blocks := 0
	for _, part := range strings.Split(doc[start:end], "```go\n")[1:] {
		block, _, ok := strings.Cut(part, "```\n")
		if !ok {
			t.Fatalf("unterminated Go block: %.60q", part)
		}
		blocks++
		if !strings.Contains(sources, block) {
			t.Errorf("docs/PLUGINS.md shows code that is not the example's source:\n%s", block)
		}
	}
	if blocks < 8 {
		t.Errorf("only %d Go blocks in the walk-through", blocks)
	}
}
