package vmtest_test

import (
	"os"
	"strings"
	"testing"
)

// TestEmbedDocQuotesExample: the code docs/EMBEDDING.md shows under "A
// complete example" is example_test.go's, verbatim, so the page cannot
// drift from code that compiles and runs.
func TestEmbedDocQuotesExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/EMBEDDING.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## A complete example")
	if !ok {
		t.Fatal(`docs/EMBEDDING.md has no "## A complete example" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := strings.Split(section, "```go\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("the example section quotes no Go code")
	}
	for i, b := range blocks {
		code, _, _ := strings.Cut(b, "```")
		if !strings.Contains(string(src), code) {
			t.Errorf("code block %d of the example section is not in example_test.go:\n%s", i+1, code)
		}
	}
}
