package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestReportKeysDocumented: docs/JOBS.md's section on the report ("##
// The report", without its subsection on the modes' -json answers)
// names every key of the JSON report, the hint providers' included, as
// a table row of its own (a line that starts "| `key` |"), and the
// `resolve` row names the keys of its object. Until the check was held
// to that section and to rows, a key passed wherever the text "| `key`
// |" stood on the page: `resolve` as the value of -resolve -json's
// `mode` row ("| `mode` | `resolve` |").
func TestReportKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/JOBS.md")
	if err != nil {
		t.Fatal(err)
	}
	section := docSection(t, string(doc), "## The report\n", "\n## ")
	if before, rest, ok := strings.Cut(section, "\n### `-resolve`, `-start-postcopy` and `-check` with `-json`\n"); ok {
		_, after, _ := strings.Cut(rest, "\n### ")
		section = before + "\n### " + after
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[report](), reflect.TypeFor[engine.Report](), reflect.TypeFor[engine.HintStats]()} {
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if key == "" || key == "-" {
				continue // embedded
			}
			if docRow(section, key) == "" {
				t.Errorf("docs/JOBS.md's report section has no row for the report key %q (%s.%s)", key, typ.Name(), f.Name)
			}
		}
	}
	row := docRow(section, "resolve")
	for f := range reflect.TypeFor[resolveSeen]().Fields() {
		if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); !strings.Contains(row, "`"+key+"`") {
			t.Errorf("docs/JOBS.md's resolve row does not name its key %q (resolveSeen.%s)", key, f.Name)
		}
	}
}

// docSection is the part of doc from the line start (its heading, a
// line break included) to the next end, or to doc's end.
func docSection(t *testing.T, doc, start, end string) string {
	t.Helper()
	_, section, ok := strings.Cut(doc, start)
	if !ok {
		t.Fatalf("docs/JOBS.md has no %q", strings.TrimSpace(start))
	}
	section, _, _ = strings.Cut(section, end)
	return section
}

// docRow is the table row of text that documents key (a line that
// starts "| `key` |"), "" where there is none.
func docRow(text, key string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "| `"+key+"` |") {
			return line
		}
	}
	return ""
}

// TestModeAnswerKeysDocumented: docs/JOBS.md's section on -resolve,
// -start-postcopy and -check with -json names every key of their answers (`key`
// in a table row), those of their steps too; of the VMM answers they
// carry as they came (a look's, the switch's), it names every key.
func TestModeAnswerKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/JOBS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### `-resolve`, `-start-postcopy` and `-check` with `-json`\n")
	if !ok {
		t.Fatal("docs/JOBS.md has no section on -resolve, -start-postcopy and -check with -json")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	keys := func(typ reflect.Type, visit func(key string, f reflect.StructField)) {
		var walk func(reflect.Type)
		walk = func(typ reflect.Type) {
			for f := range typ.Fields() {
				if f.Anonymous {
					walk(f.Type)
					continue
				}
				if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); key != "" && key != "-" {
					visit(key, f)
				}
			}
		}
		walk(typ)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[resolveAnswer](), reflect.TypeFor[actSent](), reflect.TypeFor[startPostcopyAnswer](),
		reflect.TypeFor[checkAnswer](), reflect.TypeFor[pluginChecked]()} {
		keys(typ, func(key string, f reflect.StructField) {
			if docRow(section, key) == "" {
				t.Errorf("docs/JOBS.md does not document the key %q (%s.%s) in a row of its -json section", key, typ.Name(), f.Name)
			}
		})
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[api.ResolveResult](), reflect.TypeFor[api.StartPostcopyResult]()} {
		keys(typ, func(key string, f reflect.StructField) {
			if !strings.Contains(section, "`"+key+"`") {
				t.Errorf("docs/JOBS.md does not name the key %q (api.%s.%s) in its -json section", key, typ.Name(), f.Name)
			}
		})
	}
}
